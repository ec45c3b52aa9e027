"""Denoising diffusion probabilistic models: schedules, forward process, posterior, loss, sampler.

Paper and note: DDPM, Ho, Jain & Abbeel 2020 (papers/ho2020denoising.md). Also the base of
latent diffusion priors elsewhere in the survey (papers/kreis2022latent.md and others).

Equations implemented (DDPM, Sec. 2-3; Nichol & Dhariwal 2021 for the cosine schedule):
    linear schedule   beta_t = linspace(1e-4, 0.02, T = 1000)
    cosine schedule   alpha_bar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2),  s = 0.008,
                      beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), 0.999)
    Eq. 4    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    Eq. 6-7  q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),
             mu~_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                     + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
             beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
    Eq. 11   mu_theta(x_t, t) = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t))
    Eq. 14   L_simple = E ||eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t)||^2
    Alg. 2   x_{t-1} = mu_theta(x_t, t) + sigma_t z,  sigma_t^2 = beta_t (or beta~_t), z = 0 at t = 0

Time is 0-indexed in code: index t in [0, T) is the paper's step t + 1; alpha_bar_prev at index 0
is 1 (x_{-1} stands for the clean x_0).

Notation (code -> paper):
    betas           beta_t                  alphas        alpha_t = 1 - beta_t
    alpha_bars      alpha_bar_t = prod alpha  posterior_variance   beta~_t
    eps_model       eps_theta
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,)) -> eps (B, ...)


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule: (T,) float64."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021): (T,) float64."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values (T,) at indices t (B,) -> (B, 1, ..., 1) in like's dtype, broadcastable to like."""
    return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class Schedule:
    """Every per-step quantity DDPM needs, derived once from the betas."""

    def __init__(self, betas: torch.Tensor):
        self.betas = betas.to(torch.float64)  # (T,)
        self.num_steps = len(betas)
        self.alphas = 1.0 - self.betas  # (T,)
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)  # (T,)
        self.alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])  # (T,)
        # Eq. 7: beta~_t and the two coefficients of mu~_t
        self.posterior_variance = (1 - self.alpha_bars_prev) / (1 - self.alpha_bars) * self.betas
        self.posterior_coef_x0 = self.alpha_bars_prev.sqrt() * self.betas / (1 - self.alpha_bars)
        self.posterior_coef_xt = self.alphas.sqrt() * (1 - self.alpha_bars_prev) / (1 - self.alpha_bars)


def q_sample(s: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 4 reparameterised: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps. x0 (B, ...), t (B,)."""
    return _gather(s.alpha_bars.sqrt(), t, x0) * x0 + _gather((1 - s.alpha_bars).sqrt(), t, x0) * noise


def q_posterior(s: Schedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6-7: mean (B, ...) and variance (B, 1, ...) of q(x_{t-1} | x_t, x_0)."""
    mean = _gather(s.posterior_coef_x0, t, x0) * x0 + _gather(s.posterior_coef_xt, t, x0) * xt
    return mean, _gather(s.posterior_variance, t, x0)


def predict_x0(s: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert Eq. 4 for x_0 given the noise: (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return (xt - _gather((1 - s.alpha_bars).sqrt(), t, xt) * eps) / _gather(s.alpha_bars.sqrt(), t, xt)


def p_mean(s: Schedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t)."""
    coef = _gather(s.betas / (1 - s.alpha_bars).sqrt(), t, xt)
    return (xt - coef * eps) / _gather(s.alphas.sqrt(), t, xt)


def eps_loss(
    s: Schedule, eps_model: EpsModel, x0: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Eq. 14, L_simple: draw t uniformly and eps ~ N(0, I), regress the noise."""
    t = torch.randint(0, s.num_steps, (x0.shape[0],), generator=generator, device=x0.device)  # (B,)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)  # (B, ...)
    return F.mse_loss(eps_model(q_sample(s, x0, t, noise), t), noise)


@torch.no_grad()
def p_sample_loop(
    s: Schedule,
    eps_model: EpsModel,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    variance: str = "beta",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Algorithm 2: ancestral sampling from x_T ~ N(0, I); variance 'beta' (sigma^2 = beta_t) or
    'posterior' (beta~_t)."""
    sigmas2 = s.betas if variance == "beta" else s.posterior_variance  # (T,)
    x = torch.randn(shape, generator=generator, dtype=dtype)  # (B, ...)
    for i in reversed(range(s.num_steps)):
        t = torch.full((shape[0],), i, dtype=torch.long)  # (B,)
        mean = p_mean(s, x, t, eps_model(x, t))
        if i > 0:
            x = mean + _gather(sigmas2.sqrt(), t, x) * torch.randn(shape, generator=generator, dtype=dtype)
        else:
            x = mean
    return x
