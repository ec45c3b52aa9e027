"""Classifier-free guidance, for noise predictions and for token logits alike.

Papers and notes:
    - Classifier-Free Diffusion Guidance, Ho & Salimans 2022 (papers/ho2022classifier.md): Eq. 6
      and the condition dropout of Algorithm 1.
    - Used on logits by the token priors: Parti (papers/yu2022scaling.md), Make-A-Scene
      (papers/gafni2022make.md), Muse (papers/chang2023muse.md); on noise by GLIDE
      (papers/nichol2022glide.md), Imagen (papers/saharia2022photorealistic.md) and latent
      diffusion (papers/rombach2022high.md).

Two equivalent forms, for any prediction f (noise eps or logits):
    w-form (Ho & Salimans, Eq. 6):  f~ = (1 + w) f(x, c) - w f(x)         w = 0 -> conditional
    s-form (later papers):          f~ = f(x) + s (f(x, c) - f(x))       s = 1 -> conditional
    They agree when s = 1 + w. A negative prompt replaces the unconditional branch f(x) by the
    prediction under the negative condition.

Notation (code -> paper):
    cond      eps_theta(z_lambda, c)        uncond    eps_theta(z_lambda) (the null condition)
    w         w (guidance strength)         scale     s (guidance scale, s = 1 + w)
    p_uncond  p_uncond (Algorithm 1)
"""

from __future__ import annotations

import torch


def guide_w(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Eq. 6 of Ho & Salimans: (1 + w) * cond - w * uncond. w = 0 returns cond."""
    return (1.0 + w) * cond - w * uncond


def guide_s(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """The s-form: uncond + scale * (cond - uncond). scale = 1 returns cond; scale = 1 + w equals guide_w."""
    return uncond + scale * (cond - uncond)


def drop_condition(
    cond: torch.Tensor, null: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's condition dropout: replace each example's condition by `null` with probability p_uncond.

    cond (B, ...) and null (...) broadcastable to one example. Returns (conditions, dropped) with
    dropped a (B,) bool mask of the examples that were made unconditional.
    """
    b = cond.shape[0]
    dropped = torch.rand(b, generator=generator, device=cond.device) < p_uncond  # (B,)
    mask = dropped.view(b, *([1] * (cond.dim() - 1)))  # (B, 1, ...)
    return torch.where(mask, null.expand_as(cond), cond), dropped
