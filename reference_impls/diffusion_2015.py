"""Diffusion probabilistic models: a fixed Gaussian forward diffusion, a learned Gaussian reverse, the bound.

Paper and note: Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli, "Deep Unsupervised Learning using
Nonequilibrium Thermodynamics", ICML 2015 (papers/sohldickstein2015deep.md); the official code is
Sohl-Dickstein/Diffusion-Probabilistic-Models @de92b57 (model.py, a refactoring of the paper's code).
The forward process, its marginals and the posterior q(x^(t-1) | x^(t), x^(0)) are reference_impls/ddpm.py's
(Schedule, q_sample, q_posterior): the same Gaussian chain, here with the paper's schedule.

Equations (the paper's Gaussian case; code index i in [0, T) is the paper's step t = i + 1, as in ddpm.py):
    forward     q(x^(t) | x^(t-1)) = N(x^(t-1) sqrt(1 - beta_t), beta_t I),   pi = N(0, I)
    reverse     p(x^(t-1) | x^(t)) = N(mu(x^(t), t), Sigma(x^(t), t)),        p(x^(T)) = pi(x^(T))
    first step  p(x^(0) | x^(1)) fixed to the forward kernel reversed under pi,
                = N(x^(1) sqrt(1 - beta_1), beta_1 I) (the Gaussian kernel is in detailed balance with pi)
    bound (the paper's lower bound K on the log likelihood, L >= K), written here as the upper bound -K
    on -log p(x^(0)) that training minimises:
        -K(x^(0)) = sum_{t=2}^T E_q(x^(t)|x^(0)) KL( q(x^(t-1) | x^(t), x^(0)) || p(x^(t-1) | x^(t)) )
                    + KL( q(x^(T) | x^(0)) || pi )                               (end term at T)
                    + E_q(x^(1)|x^(0)) [ -log p(x^(0) | x^(1)) ]                  (end term at t = 1)
    The paper writes the two end terms as entropies, H_q(X^(T)|X^(0)), H_q(X^(1)|X^(0)), H_p(X^(T));
    entropy_terms gives the three values model.py's get_negL_bound uses.
Reverse parameterisation (model.py get_mu_sigma): a network outputs (m, b) and
    mu = x^(t) sqrt(1 - beta_t) + m sqrt(beta_t),   Sigma = sigmoid(b / sqrt(T) + logit(beta_t)).
Schedule (model.py generate_beta_arr, its learned perturbation left at zero):
    beta_t = beta_min,t + (1 / linspace(T, 2, T))_t (1 - beta_min,t - 1e-5),
    beta_min,t = 1e-6, plus step1_beta = 1e-3 at t = 1.

Notation (code -> paper):
    betas, alpha_bars    beta_t, prod_{s<=t} (1 - beta_s)    ReverseGaussian  (mu, Sigma) of p(x^(t-1) | x^(t))
    bound_terms          the per-step KLs and the two end terms    bound    their sum, -K, in nats

Left out: the learned schedule (model.py's beta perturbation over temporal basis functions), the
multi-scale convolutional network and its temporal read-out, the binomial diffusion, and the
paper's conditional sampling (multiplying the model by a second distribution, e.g. for inpainting).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from reference_impls.ddpm import Schedule, q_posterior, q_sample


def sohl_dickstein_betas(num_steps: int = 1000, *, step1_beta: float = 1e-3) -> torch.Tensor:
    """model.py's forward schedule (no learned perturbation): (T,) float64; about 1 / T of x^(0)'s
    variance is left at t = T (model.py's comment)."""
    baseline = 1.0 / torch.linspace(num_steps, 2.0, num_steps, dtype=torch.float64)
    min_beta = torch.full((num_steps,), 1e-6, dtype=torch.float64)
    min_beta[0] += step1_beta
    return min_beta + baseline * (1 - min_beta - 1e-5)


def gaussian_kl(mean_q, var_q, mean_p, var_p) -> torch.Tensor:
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) per element (diagonal Gaussians)."""
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)


def gaussian_nll(x, mean, var) -> torch.Tensor:
    """-log N(x; mean, var) per element."""
    return 0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def gaussian_entropy(var) -> torch.Tensor:
    return 0.5 * (1 + math.log(2 * math.pi) + torch.log(torch.as_tensor(var, dtype=torch.float64)))


class ReverseGaussian(nn.Module):
    """p(x^(t-1) | x^(t)) = N(mu, Sigma), diagonal, from an MLP of (x^(t), t); model.py's read-out of (mu, Sigma)."""

    def __init__(self, schedule: Schedule, *, dim: int = 1, hidden: int = 64):
        super().__init__()
        self.num_steps = schedule.num_steps
        self.register_buffer("betas", schedule.betas.clone())  # (T,)
        self.t_emb = nn.Embedding(schedule.num_steps, hidden)  # model.py mixes over temporal basis functions instead
        self.inp = nn.Linear(dim, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * dim))

    def forward(self, xt: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xt (B, D) = x^(i+1), i (B,) -> mean, var (B, D) of x^(i)."""
        m, b = self.net(self.inp(xt) + self.t_emb(i)).chunk(2, dim=-1)  # (B, D) each
        beta = self.betas[i].to(xt.dtype)[:, None]  # (B, 1)
        mean = xt * (1 - beta).sqrt() + m * beta.sqrt()
        var = torch.sigmoid(b / math.sqrt(self.num_steps) + torch.logit(beta))
        return mean, var


def step_kl(s: Schedule, reverse: ReverseGaussian, x0: torch.Tensor, xt: torch.Tensor, i: torch.Tensor):
    """KL(q(x^(i) | x^(i+1), x^(0)) || p(x^(i) | x^(i+1))) summed over dims: (B,). i (B,) in [1, T)."""
    mean_q, var_q = q_posterior(s, x0, xt, i)
    mean_p, var_p = reverse(xt, i)
    return gaussian_kl(mean_q, var_q, mean_p, var_p).flatten(1).sum(1)


def first_step_nll(s: Schedule, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """-log p(x^(0) | x^(1)) under the fixed first reverse step N(x^(1) sqrt(1 - beta_1), beta_1): (B,)."""
    beta1 = float(s.betas[0])
    return gaussian_nll(x0, x1 * math.sqrt(1 - beta1), torch.tensor(beta1, dtype=x0.dtype)).flatten(1).sum(1)


def prior_kl(s: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """KL(q(x^(T) | x^(0)) || N(0, I)) summed over dims: (B,)."""
    ab = float(s.alpha_bars[-1])
    var = torch.tensor(1 - ab, dtype=x0.dtype)
    return gaussian_kl(math.sqrt(ab) * x0, var, torch.zeros_like(x0), torch.ones_like(x0)).flatten(1).sum(1)


def bound_terms(
    s: Schedule, reverse: ReverseGaussian, x0: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The terms of -K for each x^(0) (B, D), one draw of x^(t) ~ q(x^(t) | x^(0)) per step:
    kl (B, T - 1) for t = 2..T, first (B,), prior (B,)."""
    b = x0.shape[0]
    kls = []
    for i in range(1, s.num_steps):
        idx = torch.full((b,), i, dtype=torch.long)
        xt = q_sample(s, x0, idx, torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
        kls.append(step_kl(s, reverse, x0, xt, idx))
    zero = torch.zeros(b, dtype=torch.long)
    x1 = q_sample(s, x0, zero, torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
    return torch.stack(kls, dim=1), first_step_nll(s, x0, x1), prior_kl(s, x0)


def bound(s: Schedule, reverse: ReverseGaussian, x0: torch.Tensor, *, generator=None) -> torch.Tensor:
    """-K(x^(0)) in nats, (B,): an upper bound on -log p(x^(0))."""
    kl, first, prior = bound_terms(s, reverse, x0, generator=generator)
    return kl.sum(1) + first + prior


def bound_loss(s: Schedule, reverse: ReverseGaussian, x0: torch.Tensor, *, generator=None) -> torch.Tensor:
    """Unbiased one-step estimate of the mean of -K over the batch: (T - 1) KL at one t ~ U{2..T} per
    example, plus the two end terms (model.py draws t the same way but weights the KL by T)."""
    b = x0.shape[0]
    i = torch.randint(1, s.num_steps, (b,), generator=generator)  # (B,) code index of x^(t), t = i + 1
    xt = q_sample(s, x0, i, torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
    kl = step_kl(s, reverse, x0, xt, i)
    x1 = q_sample(s, x0, torch.zeros_like(i), torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
    return ((s.num_steps - 1) * kl + first_step_nll(s, x0, x1) + prior_kl(s, x0)).mean()


def entropy_terms(s: Schedule) -> dict[str, float]:
    """Per-dimension entropies of the paper's K, as model.py computes them (H_endpoint, H_startpoint, H_prior)."""
    return {
        "H_q(X^T|X^0)": float(gaussian_entropy(1 - s.alpha_bars[-1])),
        "H_q(X^1|X^0)": float(gaussian_entropy(s.betas[0])),
        "H_p(X^T)": float(gaussian_entropy(1.0)),
    }


@torch.no_grad()
def sample(s: Schedule, reverse: ReverseGaussian, shape: tuple[int, ...], *, generator=None, dtype=torch.float32):
    """Ancestral sampling: x^(T) ~ pi, the learned steps t = T..2, then the fixed first step."""
    x = torch.randn(shape, generator=generator, dtype=dtype)  # (B, D)
    for i in reversed(range(1, s.num_steps)):
        mean, var = reverse(x, torch.full((shape[0],), i, dtype=torch.long))
        x = mean + var.sqrt() * torch.randn(shape, generator=generator, dtype=dtype)
    beta1 = float(s.betas[0])
    return x * math.sqrt(1 - beta1) + math.sqrt(beta1) * torch.randn(shape, generator=generator, dtype=dtype)
