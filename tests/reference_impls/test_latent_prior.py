"""Tests for reference_impls/latent_prior.py (latent diffusion prior of a VAE, papers/kreis2022latent.md)."""

import torch

from reference_impls.latent_prior import LatentPrior, TinyVAE, embed, fit, mmd2, sample_data


def _two_clusters(n: int, g: torch.Generator) -> torch.Tensor:
    """A non-Gaussian aggregate posterior: two tight modes with an empty gap at the origin. (n, 2)"""
    centres = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
    return centres[torch.randint(0, 2, (n,), generator=g)] + 0.25 * torch.randn(n, 2, generator=g)


def _bimodal_curve(n: int, g: torch.Generator) -> torch.Tensor:
    """Data on a 1-D curve in 3-D whose parameter u has two modes, at -2 and 2. (n, 3)"""
    u = torch.where(torch.rand(n, generator=g) < 0.5, -2.0, 2.0) + 0.2 * torch.randn(n, generator=g)
    return torch.stack([torch.cos(u), torch.sin(u), 0.5 * u], dim=1)


def test_mmd_is_near_zero_for_one_distribution_and_large_for_different_ones():
    g = torch.Generator().manual_seed(0)
    a, b = _two_clusters(512, g), _two_clusters(512, g)
    assert mmd2(a, b) < 0.03
    assert mmd2(a, torch.randn(512, 2, generator=g)) > 10 * mmd2(a, b)


def test_learned_prior_fits_a_non_gaussian_latent_distribution_better_than_the_standard_normal():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    latents, held_out = _two_clusters(2048, g), _two_clusters(512, g)
    prior = LatentPrior(z_dim=2, num_steps=50, hidden=64)
    losses = fit(prior.loss, prior.parameters(), latents, steps=150, batch=128, lr=5e-3, generator=g)
    assert sum(losses[-20:]) < 0.8 * sum(losses[:20])
    mmd_prior = mmd2(prior.sample(512, g), held_out)
    mmd_normal = mmd2(torch.randn(512, 2, generator=g), held_out)
    assert mmd_prior < 0.5 * mmd_normal

    # the diffusion prior leaves the gap between the modes nearly empty; N(0, I) puts its mode there
    def gap(z):
        return (z[:, 0].abs() < 0.5).float().mean().item()

    assert gap(prior.sample(512, g)) < 0.5 * gap(torch.randn(512, 2, generator=g))


def test_prior_samples_decode_through_the_vae_closer_to_the_data_than_normal_samples():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, x_held = _bimodal_curve(2048, g), _bimodal_curve(512, g)
    vae = TinyVAE(data_dim=3, z_dim=1, hidden=32)
    fit(lambda b, gg: vae.loss(b, 0.05, gg), vae.parameters(), x, steps=200, batch=128, lr=1e-2, generator=g)
    for p in vae.parameters():  # stage 2 trains the prior only
        p.requires_grad_(False)
    prior = LatentPrior(z_dim=1, num_steps=50, hidden=64)
    fit(prior.loss, prior.parameters(), embed(vae, x), steps=150, batch=128, lr=5e-3, generator=g)
    decoded_prior = sample_data(vae, prior, 512, g)
    decoded_normal = sample_data(vae, None, 512, g)
    assert decoded_prior.shape == x_held.shape
    assert mmd2(decoded_prior, x_held) < 0.7 * mmd2(decoded_normal, x_held)
