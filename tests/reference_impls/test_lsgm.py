import torch

from reference_impls import ddpm
from reference_impls.lsgm import EpsMLP, MixedScore, TinyVAE, joint_step, lsgm_losses, score_from_eps


def _schedule(T: int = 50) -> ddpm.Schedule:
    return ddpm.Schedule(ddpm.linear_betas(T, 1e-4, 0.2))


def test_prior_end_of_mixing_gives_the_standard_normal_score_whatever_the_network():
    torch.manual_seed(0)
    s = _schedule()
    model = MixedScore(EpsMLP(4, num_steps=50), s, dim=4, init_logit=-float("inf"))  # alpha = 0
    z_t, t = 3 * torch.randn(8, 4), torch.randint(0, 50, (8,))
    torch.testing.assert_close(score_from_eps(s, z_t, t, model(z_t, t)), -z_t)
    # the opposite end hands everything to the network
    model.mixing_logit.data.fill_(float("inf"))
    torch.testing.assert_close(model(z_t, t), model.net(z_t, t))


def test_normal_component_is_the_optimal_denoiser_when_latents_are_standard_normal():
    # If q(z_0) = N(0, I), E[eps | z_t] = sigma_t z_t. Fit that regression slope by least squares on
    # samples and compare with the coefficient the alpha = 0 model applies to z_t.
    torch.manual_seed(0)
    s = _schedule()
    model = MixedScore(EpsMLP(2, num_steps=50), s, dim=2, init_logit=-float("inf"))
    for step in [2, 10, 30, 49]:
        z0, eps = torch.randn(20000, 2), torch.randn(20000, 2)
        t = torch.full((20000,), step)
        z_t = ddpm.q_sample(s, z0, t, eps)
        slope = (eps * z_t).sum() / (z_t * z_t).sum()
        coef = (model(z_t[:1], t[:1]) / z_t[:1]).mean()
        assert abs(coef.item() - slope.item()) < 0.02
        # and the loss of that predictor is the Gaussian minimum 1 - sigma_t^2 = alpha_bar_t per dim
        mse = (eps - model(z_t, t)).pow(2).mean().item()
        assert abs(mse - s.alpha_bars[step].item()) < 0.03


def test_mixed_prediction_is_linear_in_alpha_per_latent_dimension():
    torch.manual_seed(0)
    s = _schedule()
    model = MixedScore(EpsMLP(3, num_steps=50), s, dim=3)
    model.mixing_logit.data = torch.tensor([-2.0, 0.0, 3.0])
    z_t, t = torch.randn(5, 3), torch.randint(0, 50, (5,))
    a = torch.sigmoid(model.mixing_logit.data)
    sig = (1 - s.alpha_bars[t]).sqrt().float()[:, None]
    expected = (1 - a) * sig * z_t + a * model.net(z_t, t)
    torch.testing.assert_close(model(z_t, t), expected)


def test_cross_entropy_term_sends_gradient_to_the_encoder():
    torch.manual_seed(0)
    vae = TinyVAE(6, 3)
    prior = MixedScore(EpsMLP(3, num_steps=50), _schedule(), dim=3)
    losses = lsgm_losses(vae, prior, torch.randn(16, 6), torch.Generator().manual_seed(0))
    enc_grad = torch.autograd.grad(losses["cross_entropy"], list(vae.encoder.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in enc_grad)
    dec_grad = torch.autograd.grad(losses["cross_entropy"], list(vae.decoder.parameters()), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in dec_grad)  # the prior term never touches p(x|z)


def test_seeded_joint_training_lowers_both_losses():
    torch.manual_seed(0)
    x = torch.randn(64, 2) @ torch.randn(2, 6)  # data on a 2-d subspace of R^6
    vae, prior = TinyVAE(6, 2), MixedScore(EpsMLP(2, hidden=32, num_steps=50), _schedule(), dim=2)

    def evaluate() -> tuple[float, float]:
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            runs = [lsgm_losses(vae, prior, x, g) for _ in range(8)]
        return sum(r["vae_loss"].item() for r in runs) / 8, sum(r["prior_loss"].item() for r in runs) / 8

    vae_before, prior_before = evaluate()
    vae_opt, prior_opt = torch.optim.Adam(vae.parameters(), 3e-3), torch.optim.Adam(prior.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        joint_step(vae, prior, vae_opt, prior_opt, x, g)
    vae_after, prior_after = evaluate()
    assert vae_after < vae_before and prior_after < prior_before
