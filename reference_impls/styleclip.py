"""StyleCLIP latent optimisation: edit a generator latent so the image matches a text under CLIP.

Paper and note: StyleCLIP, Patashnik et al. 2021 (papers/patashnik2021styleclip.md), Sec. 4
(latent optimisation). The contrastive model is reference_impls/clip.py; a tiny MLP generator
stands in for StyleGAN2 and its W+ space.

Equation implemented (Eq. 1 of the paper, without the identity term):
    w* = argmin_w  D_CLIP(G(w), t) + lambda_L2 ||w - w_s||^2
    D_CLIP(x, t) = 1 - cos(E_I(x), E_T(t))         cosine distance of CLIP embeddings
    w_s is the source latent (the inversion of the image being edited); the search starts at w_s.
The paper writes the latent term as an L2 norm; the authors' released code uses the squared
distance summed over the latent, which is what this module does. Optimiser: Adam, with the
learning-rate schedule of the released code (a short linear warm-up, then a cosine ramp-down
over the last quarter of the steps).

Left out: the identity loss lambda_ID L_ID (it needs a face-recognition network), StyleCLIP's
latent mapper and its global directions in StyleSpace.

Notation (code -> paper):
    latent      w (a W+ code)          source   w_s        lam_l2   lambda_L2
    generator   G (StyleGAN2)          text_emb CLIP text embedding of t
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from reference_impls.clip import cosine_similarity


class ToyGenerator(nn.Module):
    """A frozen MLP standing in for StyleGAN2: latent (B, L, W) -> image (B, C, H, H); L latent rows like W+."""

    def __init__(self, n_latents: int, w_dim: int, channels: int, size: int, width: int = 64):
        super().__init__()
        self.shape = (channels, size, size)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_latents * w_dim, width),
            nn.Tanh(),
            nn.Linear(width, channels * size * size),
            nn.Tanh(),
        )
        self.requires_grad_(False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w).view(-1, *self.shape)  # (B, C, H, H)


def clip_distance(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """D_CLIP = 1 - cosine similarity: (B, E), (E,) or (B, E) -> (B,)."""
    return 1.0 - cosine_similarity(image_emb, text_emb)


def objective(
    w: torch.Tensor,
    source: torch.Tensor,
    generator: nn.Module,
    image_encoder: Callable[[torch.Tensor], torch.Tensor],
    text_emb: torch.Tensor,
    lam_l2: float,
) -> torch.Tensor:
    """D_CLIP(G(w), t) + lambda_L2 ||w - w_s||^2, summed over the batch: a scalar."""
    d = clip_distance(image_encoder(generator(w)), text_emb)  # (B,)
    return d.sum() + lam_l2 * (w - source).pow(2).sum()


def lr_schedule(frac: float, base_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Learning rate at fraction frac in [0, 1) of the run: linear warm-up, cosine ramp-down at the end."""
    ramp = min(1.0, (1.0 - frac) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base_lr * ramp * min(1.0, frac / rampup)


def optimise_latent(
    source: torch.Tensor,
    generator: nn.Module,
    image_encoder: Callable[[torch.Tensor], torch.Tensor],
    text_emb: torch.Tensor,
    lam_l2: float,
    steps: int = 100,
    lr: float = 0.1,
) -> tuple[torch.Tensor, list[float]]:
    """Adam on w from w = w_s; returns the edited latent (B, L, W) and the objective at every step."""
    w = source.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    history = []
    for i in range(steps):
        opt.param_groups[0]["lr"] = lr_schedule(i / steps, lr)
        loss = objective(w, source, generator, image_encoder, text_emb, lam_l2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return w.detach(), history
