"""A diffusion model as the learned prior of a VAE's latent space, replacing the standard normal.

Paper and note: Latent Space Diffusion Models of Cryo-EM Structures, Kreis et al. 2022
(papers/kreis2022latent.md). Reuses the DDPM schedule, loss and sampler (reference_impls/ddpm.py).

Two stages, as in the paper (where the VAE is cryoDRGN, trained on cryo-EM particle images):
    1. a VAE with encoder q_phi(z | x) = N(mu(x), diag sigma^2(x)), decoder p_psi(x | z) and the
       standard normal prior is trained with the ELBO
           L = E_q ||x - D(z)||^2 / 2 + beta KL(q_phi(z | x) || N(0, I));
    2. the VAE is frozen, its posterior means z = mu(x) over the data set are collected, and a DDPM
       is trained on them with L_simple. Its samples z ~ p_theta(z) are decoded by D, which replaces
       sampling z ~ N(0, I) - a prior that fails to match the aggregate posterior q(z) = E_x q(z | x)
       when q(z) is multi-modal.
The fit of a prior to the aggregate posterior is measured with the kernel maximum mean discrepancy
    MMD^2(P, Q) = E k(z, z') + E k(y, y') - 2 E k(z, y),  k a sum of Gaussian kernels.

What is simplified: the encoder and decoder are MLPs on vectors (cryoDRGN decodes a 3-D volume and
renders it through a known pose and a contrast transfer function), and the denoiser is an MLP.

Notation (code -> paper):
    TinyVAE.encode   q_phi(z | x)      TinyVAE.decode   the cryoDRGN decoder
    LatentPrior      the latent diffusion model p_theta(z)   latents   the embeddings z of the data
"""

from __future__ import annotations

import torch
from torch import nn

from reference_impls.ddpm import Schedule, eps_loss, linear_betas, p_sample_loop
from reference_impls.latent_diffusion import diagonal_gaussian_sample, kl_to_standard_normal


class TinyVAE(nn.Module):
    """x (B, D) -> q(z | x) = N(mu, diag exp(logvar)), z (B, Z) -> x_hat (B, D)."""

    def __init__(self, data_dim: int, z_dim: int = 2, hidden: int = 64):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(data_dim, hidden), nn.SiLU(), nn.Linear(hidden, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, hidden), nn.SiLU(), nn.Linear(hidden, data_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)  # (B, Z) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def loss(self, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO (Gaussian decoder, unit variance) with the standard normal prior."""
        mu, logvar = self.encode(x)
        z = diagonal_gaussian_sample(mu, logvar, generator)  # (B, Z)
        rec = 0.5 * (self.decode(z) - x).pow(2).sum(1)  # (B,)
        kl = kl_to_standard_normal(mu, logvar)  # (B,)
        return (rec + beta * kl).mean()


class EpsMLP(nn.Module):
    """eps_theta(z_t, t): (B, Z), (B,) -> (B, Z); the step enters as t / T."""

    def __init__(self, z_dim: int, num_steps: int, hidden: int = 128):
        super().__init__()
        self.num_steps = num_steps
        self.net = nn.Sequential(
            nn.Linear(z_dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, z_dim)
        )

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, (t.float() / self.num_steps)[:, None]], dim=1))


class LatentPrior(nn.Module):
    """p_theta(z): a DDPM over the VAE's latent vectors."""

    def __init__(self, z_dim: int, num_steps: int = 100, hidden: int = 128):
        super().__init__()
        # a short chain with the DDPM linear schedule's end points scaled to keep alpha_bar_T near 0
        self.sched = Schedule(linear_betas(num_steps, 1e-4 * 1000 / num_steps, 0.02 * 1000 / num_steps))
        self.eps = EpsMLP(z_dim, num_steps, hidden)
        self.z_dim = z_dim

    def loss(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return eps_loss(self.sched, self.eps, z, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return p_sample_loop(self.sched, self.eps, (n, self.z_dim), generator, variance="posterior")


def fit(
    loss_fn, params, data: torch.Tensor, steps: int, batch: int, lr: float, generator: torch.Generator
) -> list[float]:
    """Adam on minibatches of data (N, ...); loss_fn(batch, generator) -> scalar. Returns the losses."""
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=generator)
        loss = loss_fn(data[idx], generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def embed(vae: TinyVAE, x: torch.Tensor) -> torch.Tensor:
    """The latents the prior is trained on: the posterior means mu(x) (N, Z)."""
    return vae.encode(x)[0]


@torch.no_grad()
def sample_data(
    vae: TinyVAE, prior: LatentPrior | None, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Generate x = D(z) with z from the diffusion prior, or from N(0, I) when prior is None."""
    z = prior.sample(n, generator) if prior is not None else torch.randn(n, vae.dec[0].in_features, generator=generator)
    return vae.decode(z)


@torch.no_grad()
def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)) -> float:
    """Biased estimate of MMD^2 between samples x (N, D) and y (M, D) with a sum of RBF kernels."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)  # (N, M)
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    return (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()).item()
