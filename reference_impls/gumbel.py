"""Gumbel-Softmax: a differentiable relaxation of a categorical sample, and its straight-through variant.

Papers and notes:
    - Categorical Reparameterization with Gumbel-Softmax, Jang, Gu & Poole 2017
      (papers/jang2017categorical.md): the Gumbel-Softmax sample, the straight-through (ST)
      Gumbel estimator and the temperature annealing schedule.
    - Used by the DALL-E dVAE, Ramesh et al. 2021 (papers/ramesh2021zero.md), through dvae.py.

Equations implemented (Jang et al., Sec. 2-3):
    Gumbel-Max      z = one_hot(argmax_i (g_i + log pi_i)),   g_i = -log(-log u_i),  u_i ~ U(0, 1)
    Gumbel-Softmax  y_i = exp((log pi_i + g_i) / tau) / sum_j exp((log pi_j + g_j) / tau)
    ST Gumbel       forward: z = one_hot(argmax_i y_i);  backward: dz/dtheta := dy/dtheta
    annealing       tau = max(tau_min, exp(-r t)), with t rounded down to a multiple of N
                    (the temperature is changed every N steps)

Notation (code -> paper):
    logits    log pi (unnormalised log-probabilities; softmax(logits) = pi)
    tau       tau (temperature)          rate     r          every    N
    hard      use the ST Gumbel estimator
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gumbel_from_uniform(u: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """g = -log(-log u) for u in [0, 1], u clamped to [eps, 1 - 1e-7] so g stays finite."""
    return -torch.log(-torch.log(u.clamp(eps, 1.0 - 1e-7)))


def sample_gumbel(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    eps: float = 1e-20,
) -> torch.Tensor:
    """Standard Gumbel noise g = -log(-log u), u ~ U(0, 1): the survey's one Gumbel sampler."""
    return gumbel_from_uniform(torch.rand(shape, generator=generator, dtype=dtype), eps)


def gumbel_softmax(
    logits: torch.Tensor, tau: float, hard: bool = False, generator: torch.Generator | None = None, dim: int = -1
) -> torch.Tensor:
    """A Gumbel-Softmax sample along `dim` of logits (..., K, ...), same shape as logits.

    hard=False: the relaxed sample y, on the simplex.
    hard=True:  the one-hot argmax of y in the forward pass, with y's gradient in the backward pass.
    """
    g = sample_gumbel(logits.shape, generator, logits.dtype)  # same shape as logits
    y = F.softmax((logits + g) / tau, dim=dim)  # relaxed sample
    if not hard:
        return y
    index = y.argmax(dim=dim, keepdim=True)
    y_hard = torch.zeros_like(y).scatter_(dim, index, 1.0)  # one-hot
    return y_hard - y.detach() + y  # value y_hard, gradient of y


def anneal_temperature(step: int, rate: float, tau_min: float = 0.5, every: int = 1) -> float:
    """tau = max(tau_min, exp(-rate * t)) with t = step rounded down to a multiple of `every`."""
    t = (step // every) * every
    return max(tau_min, math.exp(-rate * t))
