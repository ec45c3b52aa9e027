import torch

from reference_impls.attention import causal_mask
from reference_impls.seq2seq_prior import Seq2SeqPrior

TEXT_VOCAB, IMAGE_VOCAB, M, N = 11, 9, 5, 6


def make_model(seed: int = 0) -> Seq2SeqPrior:
    torch.manual_seed(seed)
    return Seq2SeqPrior(TEXT_VOCAB, IMAGE_VOCAB, max_text=M, max_image=N + 1, dim=32, n_heads=4).eval()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, TEXT_VOCAB, (2, M), generator=g)
    image = torch.randint(0, IMAGE_VOCAB, (2, N), generator=g)
    return text, image


def test_decoder_is_causal_changing_token_j_only_affects_later_predictions():
    model, (text, image) = make_model(), batch()
    base = model(text, image)  # (B, N, K), row i predicts y_i from y_<i
    for j in range(N - 1):
        other = image.clone()
        other[:, j] = (other[:, j] + 1) % IMAGE_VOCAB
        out = model(text, other)
        assert torch.allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-6)  # y_<=j predictions untouched
        assert not torch.allclose(out[:, j + 1 :], base[:, j + 1 :], atol=1e-4)  # later ones change


def test_decoder_gradient_never_flows_from_future_image_tokens():
    model, (text, image) = make_model(), batch()
    memory = model.encode(text)
    emb = (
        model.image_embed(torch.cat([torch.full((2, 1), model.bos_id), image[:, :-1]], 1)).detach().requires_grad_(True)
    )
    h = emb + model.image_pos[:N]
    for block in model.decoder:
        h = block(h, mask=causal_mask(N), context=memory)
    h[:, 2].sum().backward()
    assert emb.grad[:, 3:].abs().max() == 0  # later inputs get no gradient
    assert emb.grad[:, :3].abs().sum(-1).min() > 0  # every earlier input does


def test_encoder_is_bidirectional_the_last_text_token_changes_the_first_encoding():
    model, (text, _) = make_model(), batch()
    other = text.clone()
    other[:, -1] = (other[:, -1] % (TEXT_VOCAB - 1)) + 1
    h, h2 = model.encode(text), model.encode(other)
    assert not torch.allclose(h[:, 0], h2[:, 0], atol=1e-4)


def test_first_image_token_depends_on_every_text_token():
    model, (text, image) = make_model(), batch()
    base = model(text, image)[:, 0]
    for m in range(M):
        other = text.clone()
        other[:, m] = (other[:, m] % (TEXT_VOCAB - 1)) + 1
        assert not torch.allclose(model(other, image)[:, 0], base, atol=1e-4)


def test_guided_logits_follow_the_formula_and_scale_one_is_conditional():
    model, (text, image) = make_model(), batch()
    prefix = image[:, :3]
    cond = model(text, torch.cat([prefix, image[:, :1]], 1))[:, 3]  # logits for y_4 given the caption
    uncond = model(model.null_text(text), torch.cat([prefix, image[:, :1]], 1))[:, 3]
    for s in (0.0, 1.0, 3.0):
        expected = uncond + s * (cond - uncond)
        assert torch.allclose(model.guided_logits(text, prefix, s), expected, atol=1e-5)
    assert torch.allclose(model.guided_logits(text, prefix, 1.0), cond, atol=1e-6)
    assert not torch.allclose(model.guided_logits(text, prefix, 3.0), cond, atol=1e-3)


def test_greedy_sampling_applies_guidance_at_every_step():
    model, (text, _) = make_model(), batch()
    out = model.sample(text, N, scale=4.0, temperature=0)
    for i in range(N):
        assert torch.equal(model.guided_logits(text, out[:, :i], 4.0).argmax(-1), out[:, i])


def test_condition_dropout_with_probability_one_trains_the_unconditional_model():
    model, (text, image) = make_model(), batch()
    dropped = model.loss(text, image, p_uncond=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dropped, model.loss(model.null_text(text), image), atol=1e-6)
    assert not torch.allclose(dropped, model.loss(text, image), atol=1e-4)


def test_training_learns_a_text_to_token_translation():
    torch.manual_seed(0)
    model = Seq2SeqPrior(TEXT_VOCAB, IMAGE_VOCAB, max_text=M, max_image=N + 1, dim=32, n_heads=4)
    text = torch.tensor([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]])
    image = torch.tensor([[0, 1, 2, 3, 4, 5], [8, 7, 6, 5, 4, 3]])  # the image is a function of the text
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(text, image)
        loss.backward()
        opt.step()
    model.eval()
    assert torch.equal(model.sample(text, N, temperature=0), image)
