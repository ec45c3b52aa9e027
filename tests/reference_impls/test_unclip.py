import torch

from reference_impls import ddpm
from reference_impls.unclip import DiffusionPrior, UnCLIPDecoder, generate, prior_loss, prior_sample

E, C, H, V, K = 6, 2, 4, 9, 3


def schedule(steps: int = 20) -> ddpm.Schedule:
    return ddpm.Schedule(ddpm.linear_betas(steps, 1e-3, 0.2))


def embeddings(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, E, generator=g), torch.randn(4, E, generator=g)  # z_t, z_i


def test_prior_target_is_the_clean_image_embedding_not_the_noise():
    s, (text_emb, image_emb) = schedule(), embeddings()

    # predicts z_i exactly
    def oracle(noisy, t, z_t):
        return image_emb

    assert prior_loss(s, oracle, text_emb, image_emb, torch.Generator().manual_seed(0)).item() == 0.0
    g = torch.Generator().manual_seed(0)
    torch.randint(0, s.num_steps, (4,), generator=g)  # prior_loss draws t first, then the noise
    noise = torch.randn(image_emb.shape, generator=g)

    # a DDPM-style eps predictor is wrong here
    def eps_oracle(noisy, t, z_t):
        return noise

    assert prior_loss(s, eps_oracle, text_emb, image_emb, torch.Generator().manual_seed(0)).item() > 0.5


def test_prior_sampling_with_an_exact_x0_predictor_lands_on_the_image_embedding():
    s, (text_emb, image_emb) = schedule(), embeddings()
    out = prior_sample(s, lambda noisy, t, z_t: image_emb, text_emb, torch.Generator().manual_seed(1))
    assert torch.allclose(out, image_emb, atol=1e-5)


def test_prior_learns_to_map_text_embeddings_to_image_embeddings():
    torch.manual_seed(0)
    s = schedule()
    text_emb = torch.randn(16, E)
    image_emb = text_emb.flip(-1) * 0.8  # a fixed map the prior must learn
    prior = DiffusionPrior(E, dim=32)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)

    def eval_loss():
        return prior_loss(s, prior, text_emb, image_emb, torch.Generator().manual_seed(9)).item()

    start = eval_loss()
    for i in range(40):
        opt.zero_grad()
        prior_loss(s, prior, text_emb, image_emb, torch.Generator().manual_seed(i)).backward()
        opt.step()
    assert eval_loss() < 0.1 * start


def test_prior_reads_the_text_embedding():
    torch.manual_seed(0)
    prior = DiffusionPrior(E).eval()
    (text_emb, image_emb), t = embeddings(), torch.tensor([1, 5, 9, 13])
    assert not torch.allclose(prior(image_emb, t, text_emb), prior(image_emb, t, text_emb + 1.0), atol=1e-4)


def make_decoder(seed: int = 0) -> UnCLIPDecoder:
    torch.manual_seed(seed)
    return UnCLIPDecoder(C, H, V, K, emb_dim=E, dim=32).eval()


def decoder_inputs(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, C, H, H, generator=g),
        torch.tensor([2, 8]),
        torch.randint(1, V, (2, K), generator=g),
        torch.randn(2, E, generator=g),
    )


def test_decoder_output_depends_on_the_image_embedding_through_both_routes():
    dec, (x, t, cap, emb) = make_decoder(), decoder_inputs()
    base = dec(x, t, cap, emb)
    assert not torch.allclose(dec(x, t, cap, emb + 0.5), base, atol=1e-4)
    embr = emb.clone().requires_grad_(True)
    dec(x, t, cap, embr).sum().backward()
    assert embr.grad.abs().sum(-1).min() > 0
    with torch.no_grad():  # remove the timestep route: the 4 context tokens still carry z_i
        dec.emb_to_time.weight.zero_()
    assert not torch.allclose(dec(x, t, cap, emb + 0.5), dec(x, t, cap, emb), atol=1e-4)
    dec2 = make_decoder()
    with torch.no_grad():  # remove the context route: the timestep embedding still carries z_i
        dec2.emb_to_tokens.weight.zero_()
    assert not torch.allclose(dec2(x, t, cap, emb + 0.5), dec2(x, t, cap, emb), atol=1e-4)


def test_decoder_embedding_dropout_replaces_the_embedding_by_zero():
    dec, (x, _, cap, emb) = make_decoder(), decoder_inputs()
    s = schedule()
    dropped = dec.loss(s, x, cap, emb, p_drop_emb=1.0, p_drop_text=0.0, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.rand(2, generator=g), torch.rand(2, generator=g)  # the two dropout draws
    ref = ddpm.eps_loss(s, lambda xt, t: dec(xt, t, cap, torch.zeros_like(emb)), x, g)
    assert torch.allclose(dropped, ref, atol=1e-6)


def test_generate_decodes_the_embedding_the_prior_sampled():
    dec, (_, _, cap, _) = make_decoder(), decoder_inputs()
    s = schedule(8)
    target = torch.randn(2, E, generator=torch.Generator().manual_seed(4))
    text_emb = torch.zeros(2, E)
    images, z = generate(
        s, lambda noisy, t, zt: target, dec, s, text_emb, cap, (2, C, H, H), generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(z, target, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    prior_sample(s, lambda noisy, t, zt: target, text_emb, g)  # consume the prior's draws
    with torch.no_grad():
        ref = ddpm.p_sample_loop(s, lambda x, t: dec(x, t, cap, z), (2, C, H, H), g, variance="posterior")
    assert torch.allclose(images, ref, atol=1e-5)
