"""Diffusion autoencoder: a semantic encoder plus a conditional DDIM that decodes and inverts.

Paper and note: Diffusion Autoencoders, Preechakul et al. 2022 (papers/preechakul2022diffusion.md).
Reuses the DDPM schedule and loss (reference_impls/ddpm.py) and the DDIM sampler and inversion
(reference_impls/ddim.py).

An image x_0 is encoded into two codes:
    z_sem = Enc_phi(x_0)                                   the semantic code (a vector)
    x_T   = DDIM inversion of x_0 under eps_theta(., t, z_sem)   the stochastic code
and decoded by the deterministic (eta = 0) DDIM sampler conditioned on z_sem:
    x_{t-1} = sqrt(alpha_{t-1}) f_theta(x_t, t, z_sem) + sqrt(1 - alpha_{t-1}) eps_theta(x_t, t, z_sem)
Training is DDPM's L_simple with the conditional noise model, so the encoder is trained only through
the denoising loss:  L = E || eps_theta(x_t, t, Enc_phi(x_0)) - eps ||^2.
The conditioning is adaptive group normalisation, AdaGN(h, t, z_sem) = z_s (t_s GroupNorm(h) + t_b)
with (t_s, t_b) from the time embedding and z_s an affine map of z_sem; on vectors we use LayerNorm.

Left out: the UNet and its half-UNet encoder (tiny MLPs here) and the latent DDIM over z_sem that
makes unconditional sampling possible (it is a DDPM on vectors: see reference_impls/latent_prior.py).

Notation (code -> paper):
    SemanticEncoder   Enc_phi          z_sem     z_sem
    CondEpsModel      eps_theta(x_t, t, z_sem)   x_T   the stochastic subcode x_T
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reference_impls.attention import sinusoidal_embedding
from reference_impls.ddim import ddim_invert, ddim_sample
from reference_impls.ddpm import Schedule, eps_loss

CondEpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t, z_sem) -> eps


class SemanticEncoder(nn.Module):
    """Enc_phi: x_0 (B, D) -> z_sem (B, Z). The paper uses the first half of its UNet; an MLP here."""

    def __init__(self, data_dim: int, z_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(data_dim, hidden), nn.SiLU(), nn.Linear(hidden, z_dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.net(x0)


class AdaNormBlock(nn.Module):
    """h -> h + MLP(z_s * (t_s * LayerNorm(h) + t_b)): AdaGN with the time and semantic conditions."""

    def __init__(self, hidden: int, t_dim: int, z_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.time = nn.Linear(t_dim, 2 * hidden)  # -> (t_s, t_b)
        self.sem = nn.Linear(z_dim, hidden)  # -> z_s
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, t_emb: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        t_s, t_b = self.time(t_emb).chunk(2, dim=1)  # (B, H) each
        z_s = self.sem(z_sem)  # (B, H)
        return h + self.out(z_s * (t_s * self.norm(h) + t_b))


class CondEpsMLP(nn.Module):
    """eps_theta(x_t, t, z_sem) for vector data: (B, D), (B,), (B, Z) -> (B, D)."""

    def __init__(self, data_dim: int, z_dim: int, hidden: int = 64, t_dim: int = 32, depth: int = 2):
        super().__init__()
        self.t_dim = t_dim
        self.inp = nn.Linear(data_dim, hidden)
        self.blocks = nn.ModuleList(AdaNormBlock(hidden, t_dim, z_dim) for _ in range(depth))
        self.outp = nn.Linear(hidden, data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        t_emb = sinusoidal_embedding(t, self.t_dim)  # (B, t_dim)
        h = self.inp(x)  # (B, H)
        for block in self.blocks:
            h = block(h, t_emb, z_sem)
        return self.outp(h)


def bind(eps_model: CondEpsModel, z_sem: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Fix the semantic condition: an unconditional-looking eps model for ddim.py."""
    return lambda x, t: eps_model(x, t, z_sem)


def diffae_loss(
    sched: Schedule,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    eps_model: CondEpsModel,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_simple with z_sem = Enc(x_0); the gradient reaches the encoder through eps_theta."""
    return eps_loss(sched, bind(eps_model, encoder(x0)), x0, generator)


@torch.no_grad()
def encode(
    sched: Schedule,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    eps_model: CondEpsModel,
    x0: torch.Tensor,
    timesteps: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_0 (B, D) -> (z_sem (B, Z), x_T (B, D)); deterministic (no randomness anywhere)."""
    z_sem = encoder(x0)
    return z_sem, ddim_invert(sched, bind(eps_model, z_sem), x0, timesteps)


@torch.no_grad()
def decode(
    sched: Schedule, eps_model: CondEpsModel, z_sem: torch.Tensor, x_T: torch.Tensor, timesteps: list[int]
) -> torch.Tensor:
    """(z_sem, x_T) -> x_0 by the eta = 0 DDIM sampler conditioned on z_sem."""
    return ddim_sample(sched, bind(eps_model, z_sem), x_T, timesteps, eta=0.0)
