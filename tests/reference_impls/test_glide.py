import torch

from reference_impls import ddpm
from reference_impls.clip import CLIP
from reference_impls.glide import TextConditionedDenoiser, classifier_free_eps, clip_guided_mean, sample

C, H, V, K = 2, 4, 9, 5


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = TextConditionedDenoiser(C, H, V, K, dim=32).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, C, H, H, generator=g)
    t = torch.tensor([3, 7])
    text = torch.randint(1, V, (2, K), generator=g)
    return model, x, t, text


def test_classifier_free_guidance_follows_the_formula_and_scale_one_is_conditional():
    model, x, t, text = setup()
    cond, uncond = model(x, t, text), model(x, t, model.null_text(text))
    assert torch.allclose(classifier_free_eps(model, x, t, text, 1.0), cond, atol=1e-6)
    assert torch.allclose(classifier_free_eps(model, x, t, text, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert not torch.allclose(classifier_free_eps(model, x, t, text, 3.0), cond, atol=1e-3)


def test_every_text_token_reaches_the_denoiser_through_the_attention_context():
    model, x, t, text = setup()
    base = model(x, t, text)
    for k in range(K):
        other = text.clone()
        other[:, k] = other[:, k] % (V - 1) + 1
        assert not torch.allclose(model(x, t, other), base, atol=1e-5)


def test_text_tokens_are_keys_of_every_attention_layer():
    model, x, t, text = setup()
    with torch.no_grad():  # cut the pooled path: the final token no longer enters the timestep embedding
        model.class_proj.weight.zero_()
        model.class_proj.bias.zero_()
    base = model(x, t, text)
    other = text.clone()
    other[:, -1] = other[:, -1] % (V - 1) + 1
    assert not torch.allclose(model(x, t, other), base, atol=1e-5)  # still reached via the context
    with torch.no_grad():
        for proj in model.ctx_proj:
            proj.weight.zero_()
            proj.bias.zero_()
    assert torch.allclose(model(x, t, other), model(x, t, text), atol=1e-6)  # both paths cut: text has no effect


def toy_clip(seed: int = 0):
    torch.manual_seed(seed)
    clip = CLIP(image_in_dim=C * H * H, vocab_size=V, width=16, embed_dim=8)
    text_emb = clip.encode_text(torch.randint(1, V, (2, 3))).detach()  # g(c), (B, E)
    return (lambda x, t: clip.encode_image(x)), text_emb  # a toy "noised CLIP" that ignores t


def test_clip_guidance_step_raises_the_clip_similarity():
    encoder, text_emb = toy_clip()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, C, H, H, generator=g)
    mean = 0.9 * x
    var = torch.tensor(0.05)
    t = torch.tensor([1, 1])
    guided = clip_guided_mean(mean, var, x, t, encoder, text_emb, scale=2.0)

    # f . g per example
    def sim(z):
        return (encoder(z, t) * text_emb).sum(-1)

    assert (sim(guided) > sim(mean)).all()


def test_clip_guidance_at_scale_zero_is_the_unguided_mean_and_is_scaled_by_the_variance():
    encoder, text_emb = toy_clip()
    x = torch.randn(2, C, H, H, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([1, 1])
    assert torch.equal(clip_guided_mean(0.9 * x, torch.tensor(0.05), x, t, encoder, text_emb, 0.0), 0.9 * x)
    shift1 = clip_guided_mean(0.9 * x, torch.tensor(0.05), x, t, encoder, text_emb, 1.0) - 0.9 * x
    shift2 = clip_guided_mean(0.9 * x, torch.tensor(0.10), x, t, encoder, text_emb, 1.0) - 0.9 * x
    assert torch.allclose(shift2, 2 * shift1, atol=1e-6)
    xr = x.clone().requires_grad_(True)
    (encoder(xr, t) * text_emb).sum().backward()
    assert torch.allclose(shift1, 0.05 * xr.grad, atol=1e-6)


def test_sampler_at_neutral_scales_equals_plain_conditional_sampling():
    model, _, _, text = setup()
    s = ddpm.Schedule(ddpm.linear_betas(10, 1e-3, 0.2))
    encoder, text_emb = toy_clip()
    out = sample(
        s,
        model,
        text,
        (2, C, H, H),
        cfg_scale=1.0,
        image_encoder=encoder,
        text_emb=text_emb,
        clip_scale=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        ref = ddpm.p_sample_loop(
            s,
            lambda x, t: model(x, t, text),
            (2, C, H, H),
            generator=torch.Generator().manual_seed(0),
            variance="posterior",
        )
    assert torch.allclose(out, ref, atol=1e-5)
    guided = sample(s, model, text, (2, C, H, H), cfg_scale=3.0, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(guided, ref, atol=1e-3)


def test_caption_dropout_with_probability_one_trains_on_the_empty_caption():
    model, x, _, text = setup()
    s = ddpm.Schedule(ddpm.linear_betas(10, 1e-3, 0.2))
    dropped = model.loss(s, x, text, p_uncond=1.0, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.rand(2, generator=g)  # the dropout draw consumed by drop_condition
    null = ddpm.eps_loss(s, lambda xt, t: model(xt, t, model.null_text(text)), x, g)
    assert torch.allclose(dropped, null, atol=1e-6)
