import torch

from reference_impls.ar_prior import sample_from_logits
from reference_impls.make_a_scene import ScenePrior, guided_ar_sample

TV, SV, IV, M, S, N = 7, 5, 6, 3, 4, 5


def make_model(seed: int = 0) -> ScenePrior:
    torch.manual_seed(seed)
    return ScenePrior(TV, SV, IV, text_len=M, scene_len=S, image_len=N).eval()


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(1, TV, (2, M), generator=g),
        torch.randint(0, SV, (2, S), generator=g),
        torch.randint(0, IV, (2, N), generator=g),
    )


class StubModel:
    """Next-token logits that depend on the caption (padding or not) and on how many tokens were chosen."""

    def __call__(self, seq: torch.Tensor) -> torch.Tensor:
        step = seq.shape[1] - 2  # streams start with 2 context tokens
        has_text = (seq[:, :1] != 0).float()  # (B, 1)
        base = torch.zeros(seq.shape[0], 3)
        base[:, step % 3] = 1.5  # the unconditional favourite moves with the step
        return base + has_text * torch.tensor([1.0, 1.2, 0.9]) - has_text * base * 0.9


def test_guidance_is_applied_to_every_sampled_token_with_the_formula():
    stub = StubModel()
    cond, uncond = torch.tensor([[3, 1]]), torch.tensor([[0, 1]])
    tokens, c_seq, u_seq = guided_ar_sample(stub, cond, uncond, 6, scale=3.0, temperature=0)
    c, u = cond, uncond
    for i in range(6):  # recompute each step by hand
        lc, lu = stub(c), stub(u)
        expected = (lu + 3.0 * (lc - lu)).argmax(-1, keepdim=True)
        assert torch.equal(tokens[:, i : i + 1], expected)
        c, u = torch.cat([c, expected], 1), torch.cat([u, expected], 1)
    assert torch.equal(c_seq, c) and torch.equal(u_seq, u)


def test_guidance_changes_the_choice_where_conditional_and_guided_argmax_differ():
    stub = StubModel()
    cond, uncond = torch.tensor([[3, 1]]), torch.tensor([[0, 1]])
    plain, _, _ = guided_ar_sample(stub, cond, uncond, 6, scale=1.0, temperature=0)
    guided, _, _ = guided_ar_sample(stub, cond, uncond, 6, scale=3.0, temperature=0)
    assert not torch.equal(plain, guided)


def test_both_streams_receive_the_same_sampled_tokens_and_keep_their_context():
    model, (text, scene, _) = make_model(), inputs()
    tokens, c_seq, u_seq = guided_ar_sample(
        model.next_logits,
        model.stream(text, scene),
        model.null_stream(text, scene),
        N,
        scale=2.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(c_seq[:, M + S :], tokens) and torch.equal(u_seq[:, M + S :], tokens)
    assert torch.equal(c_seq[:, :M], text) and (u_seq[:, :M] == model.pad_id).all()
    assert torch.equal(u_seq[:, M : M + S], scene)


def test_scale_one_gives_the_conditional_stream():
    model, (text, scene, _) = make_model(), inputs()
    out = model.sample(text, scene, N, scale=1.0, generator=torch.Generator().manual_seed(3))
    g, seq = torch.Generator().manual_seed(3), model.stream(text, scene)
    for _ in range(N):  # plain conditional sampling, no unconditional stream at all
        nxt = sample_from_logits(model.next_logits(seq), g)[:, None]  # the same draw the sampler makes
        seq = torch.cat([seq, nxt], 1)
    assert torch.equal(out, seq[:, M + S :])


def test_greedy_model_sampling_picks_the_guided_argmax_at_every_step():
    model, (text, scene, _) = make_model(), inputs()
    out = model.sample(text, scene, N, scale=5.0, temperature=0)
    for i in range(N):
        lc = model.next_logits(model.stream(text, scene, out[:, :i]))
        lu = model.next_logits(model.stream(torch.zeros_like(text), scene, out[:, :i]))
        assert torch.equal((lu + 5.0 * (lc - lu)).argmax(-1), out[:, i])


def test_image_logits_depend_on_the_scene_tokens_and_are_causal_in_the_image():
    model, (text, scene, image) = make_model(), inputs()
    base = model.image_logits(model.stream(text, scene, image[:, :-1]))  # (B, N, K)
    other_scene = (scene + 1) % SV
    assert not torch.allclose(
        model.image_logits(model.stream(text, other_scene, image[:, :-1]))[:, 0], base[:, 0], atol=1e-4
    )
    later = image.clone()
    later[:, 2] = (later[:, 2] + 1) % IV
    out = model.image_logits(model.stream(text, scene, later[:, :-1]))
    assert torch.allclose(out[:, :3], base[:, :3], atol=1e-6)
    assert not torch.allclose(out[:, 3:], base[:, 3:], atol=1e-4)


def test_training_fits_images_determined_by_the_scene():
    torch.manual_seed(0)
    model = ScenePrior(TV, SV, IV, text_len=M, scene_len=S, image_len=N)
    text = torch.tensor([[1, 2, 3], [1, 2, 3]])
    scene = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1]])
    image = torch.tensor([[0, 1, 2, 3, 4], [5, 4, 3, 2, 1]])  # same caption, the scene decides
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(text, scene, image)
        loss.backward()
        opt.step()
    model.eval()
    assert torch.equal(model.sample(text, scene, N, temperature=0), image)
