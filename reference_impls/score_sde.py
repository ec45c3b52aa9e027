"""Score SDE: VE and VP SDEs, their reverse-time SDE and the probability-flow ODE.

Paper and note: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-Based Generative Modeling
through Stochastic Differential Equations", ICLR 2021 (papers/song2021score.md). The SDE classes
follow yang-song/score_sde_pytorch @cb1f359, sde_lib.py (VPSDE, VESDE, SDE.reverse); the samplers
follow its sampling.py (EulerMaruyamaPredictor, the time grid of pc_sampler, the eps of the ODE sampler).

Equations (paper's names; code: sde_lib.py):
    forward SDE          dx = f(x, t) dt + g(t) dw,  t in [0, 1]
    reverse-time SDE     dx = [f(x, t) - g(t)^2 grad_x log p_t(x)] dt + g(t) dw_bar   (t from 1 to 0)
    probability flow     dx = [f(x, t) - 1/2 g(t)^2 grad_x log p_t(x)] dt             (same marginals p_t)
    VP SDE               f = -1/2 beta(t) x, g = sqrt(beta(t)), beta(t) = beta_min + t (beta_max - beta_min)
                         p_0t(x_t | x_0) = N(x_0 exp(-1/2 B(t)), (1 - exp(-B(t))) I),
                         B(t) = int_0^t beta = beta_min t + 1/2 t^2 (beta_max - beta_min)
                         discretised (DDPM's chain): beta_i = linspace(beta_min / N, beta_max / N, N),
                         x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z
    VE SDE               f = 0, g = sigma(t) sqrt(2 log(sigma_max / sigma_min)),
                         sigma(t) = sigma_min (sigma_max / sigma_min)^t, so g^2 = d sigma^2 / dt;
                         marginal std taken as sigma(t) (exactly sqrt(sigma(t)^2 - sigma_min^2));
                         discretised (SMLD's chain): sigma_i geometric from sigma_min to sigma_max,
                         x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z
Defaults (sde_lib.py): VP beta_min = 0.1, beta_max = 20; VE sigma_min = 0.01, sigma_max = 50; N = 1000.

Notation (code -> paper):
    drift, diffusion   f(x, t), g(t)          score_fn   s_theta(x, t) ~ grad_x log p_t(x)
    marginal_prob      mean and std of p_0t    N          number of discretisation steps

Left out: the sub-VP SDE, predictor-corrector (Langevin) correctors, the likelihood computation
through the ODE's divergence, the score networks (NCSN++, DDPM++) and conditional sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, ...), t (B,)) -> score (B, ...)


def _b(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), broadcastable to like (B, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class VPSDE:
    """Variance-preserving SDE; its discretisation is DDPM's Markov chain."""

    T = 1.0

    def __init__(self, *, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        self.beta_0, self.beta_1, self.N = beta_min, beta_max, N
        self.discrete_betas = torch.linspace(beta_min / N, beta_max / N, N, dtype=torch.float64)  # (N,)
        self.alphas = 1.0 - self.discrete_betas

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta_t = self.beta(t)  # (B,)
        return -0.5 * _b(beta_t, x) * x, beta_t.sqrt()

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0  # -B(t) / 2

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lmc = self.log_mean_coeff(t)  # (B,)
        return _b(lmc.exp(), x0) * x0, (1.0 - (2.0 * lmc).exp()).sqrt()

    def prior_sampling(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype=torch.float64):
        return torch.randn(shape, generator=generator, dtype=dtype)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM discretisation at time t, step i = floor(t (N - 1) / T) as in sde_lib.py."""
        return self.discretize_step(x, (t * (self.N - 1) / self.T).long())

    def discretize_step(self, x: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{i+1} = x_i + f_i + G_i z with f_i = (sqrt(alpha_i) - 1) x_i, G_i = sqrt(beta_i); i (B,)."""
        beta, alpha = self.discrete_betas[i].to(x.dtype), self.alphas[i].to(x.dtype)
        return (_b(alpha.sqrt(), x) - 1.0) * x, beta.sqrt()


class VESDE:
    """Variance-exploding SDE; its discretisation is SMLD's (NCSN's) chain of noise scales."""

    T = 1.0

    def __init__(self, *, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        self.sigma_min, self.sigma_max, self.N = sigma_min, sigma_max, N
        self.discrete_sigmas = torch.exp(
            torch.linspace(math.log(sigma_min), math.log(sigma_max), N, dtype=torch.float64)
        )  # (N,)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.sigma(t) * math.sqrt(2 * (math.log(self.sigma_max) - math.log(self.sigma_min)))
        return torch.zeros_like(x), g

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x0, self.sigma(t)  # std sigma(t), as sde_lib.py (exact: sqrt(sigma(t)^2 - sigma_min^2))

    def prior_sampling(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype=torch.float64):
        return torch.randn(shape, generator=generator, dtype=dtype) * self.sigma_max

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SMLD discretisation at time t, step i = floor(t (N - 1) / T) as in sde_lib.py."""
        return self.discretize_step(x, (t * (self.N - 1) / self.T).long())

    def discretize_step(self, x: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_i = 0, G_i = sqrt(sigma_i^2 - sigma_{i-1}^2) with sigma_{-1} = 0; i (B,)."""
        sigma = self.discrete_sigmas[i]
        prev = torch.where(i == 0, torch.zeros_like(sigma), self.discrete_sigmas[(i - 1).clamp(min=0)])
        return torch.zeros_like(x), (sigma**2 - prev**2).sqrt().to(x.dtype)


SDE = VPSDE | VESDE


def reverse_sde(
    sde: SDE, score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, *, probability_flow: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drift and diffusion of the reverse-time SDE (or, probability_flow=True, of the ODE: half the
    score term and no noise), as SDE.reverse in sde_lib.py."""
    drift, diffusion = sde.sde(x, t)
    drift = drift - _b(diffusion, x) ** 2 * score_fn(x, t) * (0.5 if probability_flow else 1.0)
    return drift, torch.zeros_like(diffusion) if probability_flow else diffusion


@torch.no_grad()
def euler_maruyama_sample(
    sde: SDE,
    score_fn: ScoreFn,
    x: torch.Tensor,
    *,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reverse-time SDE from x ~ p_T, Euler-Maruyama on pc_sampler's grid linspace(T, eps, N) with
    dt = -1/N (sampling.py EulerMaruyamaPredictor); returns the last noise-free mean x_mean."""
    dt = -1.0 / sde.N
    x_mean = x
    for t in torch.linspace(sde.T, eps, sde.N, dtype=torch.float64):
        vec_t = torch.full((x.shape[0],), float(t), dtype=x.dtype)  # (B,)
        drift, diffusion = reverse_sde(sde, score_fn, x, vec_t)
        x_mean = x + drift * dt
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x_mean + _b(diffusion, x) * math.sqrt(-dt) * z
    return x_mean


@torch.no_grad()
def probability_flow_sample(
    sde: SDE, score_fn: ScoreFn, x: torch.Tensor, *, n_steps: int = 1000, eps: float = 1e-3, method: str = "heun"
) -> torch.Tensor:
    """Integrate the probability-flow ODE from t = T to t = eps with n_steps fixed steps ('euler' or
    'heun'); the official sampler uses scipy's adaptive RK45 between the same end points."""
    ts = torch.linspace(sde.T, eps, n_steps + 1, dtype=torch.float64)

    def f(x, t):
        return reverse_sde(sde, score_fn, x, torch.full((x.shape[0],), float(t), dtype=x.dtype), probability_flow=True)[
            0
        ]

    for t0, t1 in zip(ts[:-1], ts[1:], strict=True):
        h = float(t1 - t0)  # negative: backwards in time
        k1 = f(x, t0)
        if method == "euler":
            x = x + h * k1
        elif method == "heun":
            x = x + 0.5 * h * (k1 + f(x + h * k1, t1))
        else:
            raise ValueError(f"method {method!r}; expected 'euler' or 'heun'")
    return x


def gaussian_data_score(sde: SDE, mean: float, std: float) -> ScoreFn:
    """The exact score of p_t when the data are N(mean, std^2 I): p_t = N(m_t mean, m_t^2 std^2 + s_t^2)."""

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m_t, s_t = sde.marginal_prob(torch.ones_like(x), t)  # m_t broadcast (B, ...), s_t (B,)
        var = m_t**2 * std**2 + _b(s_t, x) ** 2
        return -(x - m_t * mean) / var

    return score


def dsm_loss(sde: SDE, score_fn: ScoreFn, x0: torch.Tensor, *, eps: float = 1e-5, generator=None) -> torch.Tensor:
    """Denoising score matching with lambda(t) = std(t)^2 (losses.py, likelihood_weighting=False,
    reduce_mean=True): mean over the batch of mean_dims |s_theta(x_t, t) std_t + z|^2."""
    t = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype) * (sde.T - eps) + eps  # (B,)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + _b(std, x0) * z
    return (score_fn(xt, t) * _b(std, x0) + z).pow(2).flatten(1).mean(1).mean()
