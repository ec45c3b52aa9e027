"""LION: a hierarchical point-cloud VAE (shape latent + point latent) with two latent DDPMs.

Paper and note: LION, Zeng, Vahdat, Williams, Gojcic, Litany, Fidler & Kreis 2022
(papers/zeng2022lion.md). Reuses ddpm.py for both latent diffusion models and the KL and
reparameterisation helpers of latent_diffusion.py.

Equations implemented (LION, Sec. 3):
    encoder        q(z_0 | x):  one global shape latent z_0 in R^{D_z} (PointNet-style pooling)
                   q(h_0 | x, z_0):  a latent point cloud h_0 in R^{N x (3 + D_h)}, one latent
                   point per input point, conditioned on z_0
    decoder        p(x | h_0, z_0):  per-point, conditioned on z_0, returns N points in R^3
    VAE objective  ||x - x_hat||^2 + lambda_z KL(q(z_0|x) || N(0, I)) + lambda_h KL(q(h_0|x,z_0) || N(0, I))
    priors         eps_z(z_t, t) on z_0; eps_h(h_t, t, z_0) on h_0 (conditioned on the shape
                   latent), both trained with ddpm.eps_loss on encoded latents
    sampling       z_0 ~ p(z_0) first, then h_0 ~ p(h_0 | z_0), then x = decoder(h_0, z_0)

Conditioning on z_0: LION uses adaptive group normalisation inside PVCNNs; here a per-channel
scale and shift computed from z_0 (the same kind of modulation) inside point-wise MLPs.

Point order (what the tests prove): every point-wise layer is shared across points and the only
interaction between points is a symmetric max-pool, so
    * the shape latent is invariant to permuting the input points;
    * the point latent, its denoiser and the decoder are permutation-equivariant: permuting the
      points permutes the outputs the same way, and output point i corresponds to input point i.
The order itself carries no information; sampled clouds come out in the order of the sampled
latent points, which is arbitrary. Point counts are a free parameter (N is not baked into weights).

Notation (code -> paper):
    shape_dim   D_z        point_extra   D_h        z0, h0   z_0, h_0
    shape_prior eps_z      point_prior   eps_h
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls import ddpm
from reference_impls.attention import sinusoidal_embedding
from reference_impls.latent_diffusion import diagonal_gaussian_sample, kl_to_standard_normal


class Modulated(nn.Module):
    """A point-wise linear layer whose output is scaled and shifted by a global code (adaptive norm)."""

    def __init__(self, d_in: int, d_out: int, cond_dim: int):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)
        self.norm = nn.LayerNorm(d_out, elementwise_affine=False)
        self.film = nn.Linear(cond_dim, 2 * d_out)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """h (B, N, d_in), cond (B, cond_dim) -> (B, N, d_out)."""
        scale, shift = self.film(cond)[:, None].chunk(2, dim=-1)  # (B, 1, d_out) each
        return F.silu(self.norm(self.lin(h)) * (1 + scale) + shift)


class PointNetEncoder(nn.Module):
    """Shared point-wise MLP then max over points: a permutation-invariant global code."""

    def __init__(self, d_in: int, d_out: int, hidden: int = 32):
        super().__init__()
        self.point_mlp = nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.head = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.point_mlp(x).max(dim=1).values)  # (B, N, d_in) -> (B, d_out)


class PointBlock(nn.Module):
    """Point-wise modulated MLP with a max-pooled global feature fed back to every point."""

    def __init__(self, d_in: int, d_out: int, cond_dim: int, hidden: int = 32):
        super().__init__()
        self.local = Modulated(d_in, hidden, cond_dim)
        self.mix = Modulated(2 * hidden, hidden, cond_dim)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        f = self.local(h, cond)  # (B, N, hidden)
        g = f.max(dim=1, keepdim=True).values.expand_as(f)  # (B, N, hidden), same for all points
        return self.out(self.mix(torch.cat([f, g], dim=-1), cond))  # (B, N, d_out)


class HierarchicalPointVAE(nn.Module):
    """q(z_0|x), q(h_0|x, z_0) and p(x|h_0, z_0)."""

    def __init__(self, shape_dim: int = 8, point_extra: int = 1, hidden: int = 32):
        super().__init__()
        self.shape_dim, self.point_dim = shape_dim, 3 + point_extra
        self.shape_encoder = PointNetEncoder(3, 2 * shape_dim, hidden)
        self.point_encoder = PointBlock(3, 2 * self.point_dim, shape_dim, hidden)
        self.decoder = PointBlock(self.point_dim, 3, shape_dim, hidden)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """x (B, N, 3) -> means, log-variances and draws of z_0 (B, D_z) and h_0 (B, N, 3 + D_h)."""
        z_mean, z_logvar = self.shape_encoder(x).chunk(2, dim=-1)
        z0 = diagonal_gaussian_sample(z_mean, z_logvar, generator)
        h_mean, h_logvar = self.point_encoder(x, z0).chunk(2, dim=-1)
        h_mean = h_mean + F.pad(x, (0, self.point_dim - 3))  # latent points start at the input xyz
        h0 = diagonal_gaussian_sample(h_mean, h_logvar, generator)
        return {"z_mean": z_mean, "z_logvar": z_logvar, "z0": z0, "h_mean": h_mean, "h_logvar": h_logvar, "h0": h0}

    def decode(self, h0: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """h0 (B, N, 3 + D_h), z0 (B, D_z) -> points (B, N, 3), offsets from the latent xyz."""
        return h0[..., :3] + self.decoder(h0, z0)

    def loss(self, x: torch.Tensor, kl_weight: float = 1e-3, generator: torch.Generator | None = None) -> torch.Tensor:
        enc = self.encode(x, generator)
        recon = (self.decode(enc["h0"], enc["z0"]) - x).pow(2).sum(-1).mean(-1)  # (B,) point-to-point
        kl = kl_to_standard_normal(enc["z_mean"], enc["z_logvar"]) + kl_to_standard_normal(
            enc["h_mean"], enc["h_logvar"]
        )
        return (recon + kl_weight * kl).mean()


class ShapePrior(nn.Module):
    """eps_z(z_t, t) for the global shape latent."""

    def __init__(self, shape_dim: int, hidden: int = 64, num_steps: int = 1000):
        super().__init__()
        self.num_steps = num_steps
        self.net = nn.Sequential(
            nn.Linear(shape_dim + 16, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, shape_dim),
        )

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z_t, sinusoidal_embedding(t, 16)], dim=-1))  # (B, D_z)


class PointPrior(nn.Module):
    """eps_h(h_t, t, z_0): a permutation-equivariant point network conditioned on z_0 and t."""

    def __init__(self, point_dim: int, shape_dim: int, hidden: int = 32, num_steps: int = 1000):
        super().__init__()
        self.num_steps = num_steps
        self.block = PointBlock(point_dim, point_dim, shape_dim + 16, hidden)

    def forward(self, h_t: torch.Tensor, t: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([z0, sinusoidal_embedding(t, 16)], dim=-1)  # (B, D_z + 16)
        return self.block(h_t, cond)  # (B, N, 3 + D_h)


class LION(nn.Module):
    """The VAE plus the two latent DDMs; the VAE is trained first and then frozen."""

    def __init__(
        self, vae: HierarchicalPointVAE, shape_prior: ShapePrior, point_prior: PointPrior, schedule: ddpm.Schedule
    ):
        super().__init__()
        self.vae, self.shape_prior, self.point_prior, self.schedule = vae, shape_prior, point_prior, schedule

    def prior_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Both DDM losses on latents of the frozen encoder; the point DDM sees the clean z_0."""
        with torch.no_grad():
            enc = self.vae.encode(x, generator)
        z0, h0 = enc["z0"], enc["h0"]
        loss_z = ddpm.eps_loss(self.schedule, self.shape_prior, z0, generator)
        loss_h = ddpm.eps_loss(self.schedule, lambda h_t, t: self.point_prior(h_t, t, z0), h0, generator)
        return loss_z + loss_h

    @torch.no_grad()
    def sample_shape_latent(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return ddpm.p_sample_loop(self.schedule, self.shape_prior, (batch, self.vae.shape_dim), generator)

    @torch.no_grad()
    def sample_point_latent(
        self, z0: torch.Tensor, num_points: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        shape = (z0.shape[0], num_points, self.vae.point_dim)
        return ddpm.p_sample_loop(self.schedule, lambda h_t, t: self.point_prior(h_t, t, z0), shape, generator)

    @torch.no_grad()
    def sample(self, batch: int, num_points: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """z_0 first, then h_0 given z_0, then decode: points (B, N, 3)."""
        z0 = self.sample_shape_latent(batch, generator)
        h0 = self.sample_point_latent(z0, num_points, generator)
        return {"z0": z0, "h0": h0, "points": self.vae.decode(h0, z0)}
