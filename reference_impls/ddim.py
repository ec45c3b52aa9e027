"""Denoising diffusion implicit models: the eta sampler over a timestep subsequence, and inversion.

Paper and note: DDIM, Song, Meng & Ermon 2021 (papers/song2021denoising.md). Reused by the
Diffusion Autoencoder (papers/preechakul2022diffusion.md), whose stochastic code x_T is the DDIM
inversion of an image.

DDIM keeps DDPM's marginals q(x_t | x_0) and its trained eps-model (reference_impls/ddpm.py) and
changes only the sampler. Over a decreasing subsequence tau_S > ... > tau_1 of the training steps,
one step from tau_i to tau_{i-1} is (the paper writes alpha for DDPM's alpha_bar):

    x0_hat      = (x_t - sqrt(1 - alpha_t) eps_theta(x_t, t)) / sqrt(alpha_t)
    x_{t_prev}  = sqrt(alpha_prev) x0_hat + sqrt(1 - alpha_prev - sigma^2) eps_theta(x_t, t) + sigma z
    sigma       = eta sqrt((1 - alpha_prev) / (1 - alpha_t)) sqrt(1 - alpha_t / alpha_prev)

eta = 0 is the deterministic DDIM; eta = 1 has DDPM's posterior variance. After the last entry
tau_1 the step goes to the clean sample (alpha_prev = 1, index -1 below).

Deterministic inversion (the eta = 0 ODE run backwards, as used by Diff-AE): the step from t_prev
up to t reuses the eps evaluated at the known, less noisy point,
    x_t = sqrt(alpha_t) x0_hat(x_{t_prev}) + sqrt(1 - alpha_t) eps_theta(x_{t_prev}, t_prev),
which is exact in the limit of small steps.

Timestep lists (0-indexed, as in reference_impls/ddpm.py and diffusers' DDIMScheduler):
    leading   [0, r, 2r, ...] reversed, r = T // S
    trailing  round(T - i T / S) - 1 for i = 0..S-1 (starts at T - 1)
    linspace  round(linspace(0, T - 1, S)) reversed
The previous timestep of each step is the NEXT entry of the list (-1 after the last one). diffusers'
DDIMScheduler.step computes it as t - T // S instead, which disagrees with the list for trailing and
linspace spacing whenever S does not divide T.

Notation (code -> paper):
    alpha_bars[t]   alpha_t of the DDIM paper (alpha_bar_t of DDPM)
    timesteps       tau (decreasing here)          eta   eta
    eps_model       eps_theta^{(t)}                sigma sigma_{tau_i}(eta)
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from reference_impls.ddpm import EpsModel, Schedule


def make_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The decreasing subsequence tau of length num_steps: 'leading', 'trailing' or 'linspace'."""
    T, S = num_train_steps, num_steps
    if spacing == "leading":
        ratio = T // S
        ts = [i * ratio for i in range(S)]
    elif spacing == "trailing":
        delta = (T - T / S) - T  # the stride as numpy's arange realises it, so rounding ties match diffusers
        ts = [int(torch.round(torch.tensor(T + i * delta, dtype=torch.float64))) - 1 for i in range(S)]
    elif spacing == "linspace":
        if S == 1:
            ts = [0]
        else:
            grid = torch.arange(S, dtype=torch.float64) * ((T - 1) / (S - 1))  # (S,)
            grid[-1] = T - 1
            ts = torch.round(grid).long().tolist()
    else:
        raise ValueError(f"unknown spacing {spacing!r}")
    return sorted(ts, reverse=True)


def step_pairs(timesteps: list[int]) -> list[tuple[int, int]]:
    """(t, t_prev) for each sampling step: t_prev is the next list entry, -1 (clean) after the last."""
    return list(pairwise([*timesteps, -1]))


def _alpha_bar(s: Schedule, t: int) -> float:
    """alpha_bar at index t, with alpha_bar(-1) = 1 for the clean sample."""
    return 1.0 if t < 0 else float(s.alpha_bars[t])


def ddim_sigma(s: Schedule, t: int, t_prev: int, eta: float) -> float:
    """Eq. 16: sigma_tau(eta) = eta sqrt((1 - alpha_prev) / (1 - alpha_t)) sqrt(1 - alpha_t / alpha_prev).

    With eta = 1 and t_prev = t - 1 this is sqrt(beta~_t), DDPM's posterior standard deviation.
    """
    a_t, a_prev = _alpha_bar(s, t), _alpha_bar(s, t_prev)
    return eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)


def ddim_step(
    s: Schedule,
    x: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The generalised generative step: from x_t (B, ...) with predicted noise eps (B, ...) to x_{t_prev}."""
    a_t, a_prev = _alpha_bar(s, t), _alpha_bar(s, t_prev)
    x0_hat = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)  # (B, ...)
    sigma = ddim_sigma(s, t, t_prev, eta)  # sigma_tau(eta)
    direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps  # "direction pointing to x_t"
    x_prev = math.sqrt(a_prev) * x0_hat + direction
    if sigma > 0:
        x_prev = x_prev + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x_prev


@torch.no_grad()
def ddim_sample(
    s: Schedule,
    eps_model: EpsModel,
    x_T: torch.Tensor,
    timesteps: list[int],
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run the eta sampler from x_T (B, ...) at timesteps[0] down to the clean sample."""
    x = x_T
    for t, t_prev in step_pairs(timesteps):
        tt = torch.full((x.shape[0],), t, dtype=torch.long)  # (B,)
        x = ddim_step(s, x, eps_model(x, tt), t, t_prev, eta, generator)
    return x


@torch.no_grad()
def ddim_invert(s: Schedule, eps_model: EpsModel, x0: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Deterministic encoding x_0 (B, ...) -> x at timesteps[0] by running the eta = 0 ODE upwards.

    The first step starts at the clean input, where no timestep is defined; it evaluates the model
    at the smallest timestep of the list.
    """
    up = sorted(timesteps)  # increasing
    x = x0
    prev = -1
    for t in up:
        t_eval = up[0] if prev < 0 else prev
        tt = torch.full((x.shape[0],), t_eval, dtype=torch.long)  # (B,)
        eps = eps_model(x, tt)
        a_prev, a_t = _alpha_bar(s, prev), _alpha_bar(s, t)
        x0_hat = (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
        x = math.sqrt(a_t) * x0_hat + math.sqrt(1 - a_t) * eps
        prev = t
    return x


def exact_eps_oracle(s: Schedule, x0: torch.Tensor) -> EpsModel:
    """The exact noise predictor when the data is the single point x0 (B, ...):
    eps(x_t, t) = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t). Any correct sampler maps it to x0."""

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = s.alpha_bars[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ...)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    return eps_model


def gaussian_eps_oracle(s: Schedule, mean: torch.Tensor, std: float) -> EpsModel:
    """The exact (minimum-MSE) noise predictor when the data is N(mean, std^2 I):
    eps(x_t, t) = sqrt(1 - a) (x_t - sqrt(a) mean) / (a std^2 + 1 - a), a = alpha_bar_t.
    Its probability-flow ODE is smooth, so DDIM inversion followed by sampling round-trips."""

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = s.alpha_bars[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))  # (B, 1, ...)
        return (1 - a).sqrt() * (x - a.sqrt() * mean) / (a * std**2 + 1 - a)

    return eps_model
