"""LSGM: a score-based prior in a VAE's latent space, with the mixed score, trained jointly.

Paper and note: LSGM, Vahdat, Kreis & Kautz 2021 (papers/vahdat2021score.md).

LSGM uses continuous-time SDEs; this module uses the discrete-time variance-preserving chain of
ddpm.py (the released code has the same discretised variant), so sigma_t^2 = 1 - alpha_bar_t.

Equations implemented (LSGM, Sec. 3):
    objective      L(x) = E_q[-log p(x|z_0)] + E_q[log q(z_0|x)] + CE(q(z_0|x) || p_theta(z_0))
                   (reconstruction + negative encoder entropy + cross-entropy to the SGM prior)
    CE estimate    CE ~ E_{t, eps} [ w_t ||eps - eps_theta(z_t, t)||^2 ] + terms without theta,
                   z_t = sqrt(alpha_bar_t) z_0 + sigma_t eps; here w_t is DDPM's likelihood
                   weight T beta_t / (2 alpha_t (1 - alpha_bar_t)) (sigma^2 = beta_t)
    mixed score    eps_theta(z_t, t) = (1 - alpha) * sigma_t z_t + alpha * eps'_theta(z_t, t),
                   alpha = sigmoid(mixing_logit) in [0, 1]^d, one weight per latent variable
                   score(z_t) = -eps_theta(z_t, t) / sigma_t, so alpha = 0 gives -z_t, the score
                   of N(0, I) (which every marginal of the VP chain equals if z_0 ~ N(0, I))
    joint training the VAE (encoder and decoder) minimises L with the likelihood weight; the prior
                   minimises the unweighted eps regression (LSGM's "reweighted" objective for p);
                   both are updated at every step.

Notation (code -> paper):
    sigma_t              sigma_t = sqrt(1 - alpha_bar_t)    net          eps'_theta
    mixing_logit         the logit of alpha                 MixedScore   eps_theta
    neg_entropy          E_q[log q(z_0|x)]                  z0           z_0 ~ q(z_0|x)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from reference_impls import ddpm
from reference_impls.attention import sinusoidal_embedding
from reference_impls.latent_diffusion import diagonal_gaussian_sample


def sigma_t(s: ddpm.Schedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """sqrt(1 - alpha_bar_t) at t (B,), shaped (B, 1, ...) like `like`."""
    return (1 - s.alpha_bars).sqrt().to(like.dtype)[t].view(-1, *([1] * (like.dim() - 1)))


def score_from_eps(s: ddpm.Schedule, z_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """grad_z log p(z_t) = -eps / sigma_t."""
    return -eps / sigma_t(s, t, z_t)


class EpsMLP(nn.Module):
    """eps'_theta(z_t, t) for flat latents (B, d)."""

    def __init__(self, dim: int, hidden: int = 64, num_steps: int = 1000):
        super().__init__()
        self.num_steps, self.temb_dim = num_steps, 16
        self.net = nn.Sequential(
            nn.Linear(dim + self.temb_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = sinusoidal_embedding(t, self.temb_dim)  # (B, 16)
        return self.net(torch.cat([z_t, temb], dim=-1))  # (B, d)


class MixedScore(nn.Module):
    """eps_theta = (1 - alpha) sigma_t z_t + alpha eps'_theta, alpha = sigmoid(mixing_logit) per dim."""

    def __init__(self, net: nn.Module, schedule: ddpm.Schedule, dim: int, init_logit: float = 0.0):
        super().__init__()
        self.net, self.schedule = net, schedule
        self.mixing_logit = nn.Parameter(torch.full((dim,), init_logit))

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.mixing_logit)  # (d,)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        normal_part = sigma_t(self.schedule, t, z_t) * z_t  # (B, d): the N(0, I) prediction
        return (1 - self.alpha) * normal_part + self.alpha * self.net(z_t, t)


class TinyVAE(nn.Module):
    """q(z_0|x) = N(mu(x), diag sigma^2(x)), p(x|z_0) = N(decoder(z_0), I) (up to a constant)."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.SiLU(), nn.Linear(hidden, x_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, d) each
        return mean, logvar.clamp(-10.0, 5.0)


def likelihood_weight(s: ddpm.Schedule, t: torch.Tensor) -> torch.Tensor:
    """T beta_t / (2 alpha_t (1 - alpha_bar_t)), DDPM's L_{t-1} weight on ||eps - eps_theta||^2 (sigma^2 = beta_t)."""
    w = s.num_steps * s.betas / (2 * s.alphas * (1 - s.alpha_bars))
    return w.float()[t]  # (B,)


def lsgm_losses(
    vae: TinyVAE, prior: MixedScore, x: torch.Tensor, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """One Monte Carlo estimate of the VAE objective (with the SGM cross-entropy) and the prior loss."""
    s = prior.schedule
    mean, logvar = vae.encode(x)
    z0 = diagonal_gaussian_sample(mean, logvar, generator)  # (B, d), differentiable in the encoder
    recon = 0.5 * (vae.decoder(z0) - x).pow(2).sum(-1)  # -log p(x|z_0) up to a constant, (B,)
    # log q(z_0|x) at the drawn sample; its mean is the negative entropy of the encoder
    neg_entropy = (-0.5 * (math.log(2 * math.pi) + logvar + (z0 - mean).pow(2) / logvar.exp())).sum(-1)
    t = torch.randint(0, s.num_steps, (x.shape[0],), generator=generator)  # (B,)
    eps = torch.randn(z0.shape, generator=generator)
    z_t = ddpm.q_sample(s, z0, t, eps)
    sq_err = (eps - prior(z_t, t)).pow(2).sum(-1)  # (B,)
    cross_entropy = likelihood_weight(s, t) * sq_err
    return {
        "recon": recon.mean(),
        "neg_entropy": neg_entropy.mean(),
        "cross_entropy": cross_entropy.mean(),
        "vae_loss": (recon + neg_entropy + cross_entropy).mean(),
        "prior_loss": sq_err.mean(),
    }


def joint_step(
    vae: TinyVAE,
    prior: MixedScore,
    vae_opt: torch.optim.Optimizer,
    prior_opt: torch.optim.Optimizer,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Update the VAE with vae_loss and the score prior with prior_loss, from one shared forward pass."""
    losses = lsgm_losses(vae, prior, x, generator)
    vae_params, prior_params = list(vae.parameters()), list(prior.parameters())
    vae_grads = torch.autograd.grad(losses["vae_loss"], vae_params, retain_graph=True)
    prior_grads = torch.autograd.grad(losses["prior_loss"], prior_params)
    for p, g in zip(vae_params + prior_params, list(vae_grads) + list(prior_grads), strict=True):
        p.grad = g
    vae_opt.step()
    prior_opt.step()
    return {k: v.detach() for k, v in losses.items()}
