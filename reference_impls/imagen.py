"""Imagen's sampling and cascade tricks: static and dynamic thresholding, noise conditioning augmentation.

Paper and note: Imagen, Saharia et al. 2022 (papers/saharia2022photorealistic.md). Builds on the
DDPM posterior (reference_impls/ddpm.py) and on classifier-free guidance (reference_impls/guidance.py).

Equations implemented:
    static thresholding    x0_hat <- clip(x0_hat, -1, 1)
    dynamic thresholding   s = max(1, percentile_p(|x0_hat|))   (per sample, over all its pixels)
                           x0_hat <- clip(x0_hat, -s, s) / s
    guided step            eps~ = (1 + w) eps(x_t, c) - w eps(x_t)                (guidance.guide_w)
                           x0_hat = (x_t - sqrt(1 - a_t) eps~) / sqrt(a_t), then thresholded,
                           x_{t-1} ~ q(x_{t-1} | x_t, x0_hat)  (DDPM Eq. 6-7 with the clipped x0_hat)
    noise conditioning     the low-resolution conditioning image z of a super-resolution stage is
    augmentation           corrupted as z_aug = sqrt(1 - g) z + sqrt(g) eps, and the level g is given
                           to the super-resolution model as an extra condition; g is drawn at random
                           while training and fixed (swept) when sampling. The variance-preserving
                           form with g the noise variance is our parameterisation; the paper states
                           only that Gaussian noise of level aug_level is added and conditioned on.

Notation (code -> paper):
    x0_hat       x^t_0 (the model's prediction of the clean image)
    percentile   p (the percentile of absolute pixel values; diffusers' default ratio is 0.995)
    aug_level    aug_level                     w   guidance weight
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference_impls.ddpm import Schedule, predict_x0, q_posterior
from reference_impls.guidance import guide_w


def static_threshold(x0_hat: torch.Tensor) -> torch.Tensor:
    """Elementwise clipping of x0_hat (B, ...) to [-1, 1]."""
    return x0_hat.clamp(-1.0, 1.0)


def dynamic_threshold(x0_hat: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    """Per sample: s = max(1, p-quantile of |x0_hat|); clip to [-s, s] and divide by s. x0_hat (B, ...)."""
    flat = x0_hat.reshape(x0_hat.shape[0], -1).abs()  # (B, N)
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0)  # (B,)
    s = s.view(-1, *([1] * (x0_hat.dim() - 1)))  # (B, 1, ...)
    return torch.maximum(torch.minimum(x0_hat, s), -s) / s


@torch.no_grad()
def guided_step(
    sched: Schedule,
    x: torch.Tensor,
    t: int,
    eps_cond: torch.Tensor,
    eps_uncond: torch.Tensor,
    w: float,
    threshold: str = "dynamic",
    percentile: float = 0.995,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step from x_t (B, ...) at index t; returns (x_{t-1}, thresholded x0_hat)."""
    tt = torch.full((x.shape[0],), t, dtype=torch.long)  # (B,)
    x0_hat = predict_x0(sched, x, tt, guide_w(eps_cond, eps_uncond, w))  # (B, ...)
    if threshold == "dynamic":
        x0_hat = dynamic_threshold(x0_hat, percentile)
    elif threshold == "static":
        x0_hat = static_threshold(x0_hat)
    mean, var = q_posterior(sched, x0_hat, x, tt)
    if t == 0:
        return mean, x0_hat
    return mean + var.sqrt() * torch.randn(x.shape, generator=generator, dtype=x.dtype), x0_hat


def augment_low_res(z: torch.Tensor, aug_level: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise conditioning augmentation: z (B, C, h, w), aug_level (B,) in [0, 1] -> corrupted z."""
    g = aug_level.to(z.dtype).view(-1, *([1] * (z.dim() - 1)))  # (B, 1, 1, 1)
    noise = torch.randn(z.shape, generator=generator, dtype=z.dtype)
    return (1 - g).sqrt() * z + g.sqrt() * noise


def sr_conditioning(
    z: torch.Tensor,
    size: int,
    aug_level: torch.Tensor | None = None,
    max_level: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a super-resolution stage (64 -> 256 or 256 -> 1024 in Imagen) is conditioned on.

    z (B, C, h, w) is the low-resolution image. Training: aug_level None, so each example draws
    aug_level ~ U[0, max_level). Sampling: pass a fixed aug_level (B,). Returns the augmented image
    upsampled to (B, C, size, size) and the aug_level (B,) that the model also receives.
    """
    if aug_level is None:
        aug_level = max_level * torch.rand(z.shape[0], generator=generator)  # (B,)
    z_aug = augment_low_res(z, aug_level, generator)
    up = F.interpolate(z_aug, size=(size, size), mode="bilinear", align_corners=False)  # (B, C, size, size)
    return up, aug_level
