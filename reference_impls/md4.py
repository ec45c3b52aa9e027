"""Masked (absorbing-state) diffusion in continuous time: MD4's schedule, bound and ancestral sampler.

Paper and note:
    - MD4, Shi et al. 2024, "Simplified and Generalized Masked Diffusion for Discrete Data"
      (papers/shi2024simplified.md); official code google-deepmind/md4 @ b9fbf29,
      md4/models/diffusion/md4.py (MaskingSchedule, MD4.forward_sample, diffusion_loss,
      recon_loss, ancestral_sample_step, get_sampling_grid, decode), whose forms this module follows;
      equation numbers are those of the arXiv paper (2406.04329).
    - reference_impls/mdlm.py (MDLM, papers/sahoo2024simple.md) imports the schedule, the masking,
      the time sampler and the bound from here.

The forward process masks each of the N tokens independently and never unmasks one:
    q(z_t^n | x^n) = alpha_t [z = x^n] + (1 - alpha_t) [z = m],   alpha decreasing from ~1 (t = 0) to ~0 (t = 1).
This is D3PM's absorbing family (reference_impls/discrete_diffusion.py) with its cumulative
keep rate abar_t replaced by a continuous alpha_t; the time-0-to-t marginal is the same row.

Equations implemented (paper numbers; m = [MASK], mu_theta(z_t, t) the denoiser's distribution over the V data classes):
    Eq. 1     q(z_t | x) = Cat(alpha_t x + (1 - alpha_t) e_m), alpha_t = exp(-int_0^t beta(s) ds)
    Tab. 4    schedules and weights, eps = 0:  linear 1 - t, weight -1/t;  polynomial 1 - t^w, -w/t;
              cosine 1 - cos(pi/2 (1 - t)), -pi/2 tan(pi/2 (1 - t)). The official MaskingSchedule
              squeezes them to alpha_t = (1 - 2 eps) a(t) + eps (eps = 1e-4), so alpha_0 = 1 - eps, alpha_1 = eps.
    weight    w(t) = alpha'_t / (1 - alpha_t)   (<= 0; the paper's sign; the official dgamma_times_alpha)
    Eq. 3     mu_theta = softmax(f_theta) on a masked z_t (the [MASK] output forced to 0), z_t itself otherwise:
              here logits_fn returns V data logits, and a masked-only loss and a carry-over sampler never
              read the unmasked rows (mdlm.py writes the substitution out as SUBS).
    Eq. 5     L_inf(x) = int_0^1 w(t) E_{q(z_t | x)} [ sum_{n: z_t^n = m} log mu_theta^n(z_t, t)_{x^n} ] dt
              (nats per sequence, the diffusion term of the negative ELBO; Eq. 4 is the one-token case)
              Monte Carlo (Alg. 1): t_b = (u + b / B) mod 1 with one u ~ U(0, 1) per batch of B (the
              official "antithetic_time_sampling"; or i.i.d. t ~ U(0, 1)), z_t ~ q(z_t | x), one term per t.
    App. D    per-step KL = -(alpha_s - alpha_t) / (1 - alpha_t) [z_t = m] log mu_{x}, so with T steps,
              s = t - 1/T on the grid t in {1/T, .., 1} (official cont_time=False):
              L_T(x) = sum_{i=1}^T (alpha_s - alpha_t) / (1 - alpha_t) E_q [ -sum_{n: z_t^n = m} log mu_{x^n} ]
              (the official T expm1(gamma_t - gamma_s) alpha_s, gamma = logit(alpha), is the same factor);
              L_T is a Riemann sum of L_inf and L_T >= L_inf (Sec. 3).
    App. D    reconstruction term N (1 - alpha_0) log V (official recon_loss);
    App. E    prior term N alpha_1 log V with the prior p(z_1) = alpha_1 / V on each data class (the
              official latent_loss returns 0, "negligible"); both vanish for eps = 0.
    Eq. 17, Alg. 2  ancestral step s < t: a masked token stays [MASK] with probability (1 - alpha_s) / (1 - alpha_t)
              and otherwise becomes v with probability (alpha_s - alpha_t) / (1 - alpha_t) mu_theta(z_t, t)_v;
              an unmasked token is carried over. Eq. 6: the "cosine" grid t(i) = cos(pi/2 (1 - i/T)).

With the exact denoiser mu = q(x^n | unmasked tokens of z_t), eps = 0 and alpha_0 = 1, alpha_1 = 0,
L_inf(x) = -log q(x) for every x, whatever the schedule: the substitution lambda = 1 - alpha_t turns
w(t) dt into -d lambda / lambda, and int_0^1 C(N, k) lambda^(k-1) (1 - lambda)^(N-k) d lambda = 1 / k,
so L_inf is the average over orders of an any-order autoregressive chain rule (tests/reference_impls/
test_md4.py checks this by quadrature). L_T with few steps is looser: L_1 is the sum of the marginal
negative log-likelihoods, because one step unmasks every token independently.

Notation (code -> paper):
    alpha(t), dalpha(t)   alpha_t, alpha'_t          weight(t)   alpha'_t / (1 - alpha_t)
    mask_id               m (= V in the official code)  logits_fn(z_t, t)  logits of mu_theta over V (or V + 1) classes
    x, z                  x (data), z_t (latent)     n_t         Monte Carlo time samples per sequence

API used elsewhere: `masked_diffusion_nll_bound(logits_fn, x, *, mask_id, schedule, n_t, generator)`
returns a Monte Carlo estimate (B,) of the negative ELBO in nats per sequence; `sample(...)` draws
sequences with `num_steps` model calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from reference_impls.discrete_diffusion import sample_categorical

LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t (B, N) int64, t (B,)) -> (B, N, V or V+1)


class Schedule(Protocol):
    """Anything with alpha_t and its weight alpha'_t / (1 - alpha_t); MaskingSchedule and mdlm's LogLinear are two."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    def weight(self, t: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class MaskingSchedule:
    """The official MaskingSchedule: alpha_t = (1 - 2 eps) a(t) + eps for kind 'linear', 'cosine' or 'polyK'."""

    kind: str = "linear"
    eps: float = 1e-4

    def _a(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return 1.0 - t
        if self.kind == "cosine":
            return 1.0 - torch.cos(math.pi / 2 * (1.0 - t))
        if self.kind.startswith("poly"):
            return 1.0 - t ** float(self.kind[4:])
        raise ValueError(f"unknown schedule {self.kind!r}")

    def _da(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return -torch.ones_like(t)
        if self.kind == "cosine":
            return -math.pi / 2 * torch.sin(math.pi / 2 * (1.0 - t))
        if self.kind.startswith("poly"):
            k = float(self.kind[4:])
            return -k * t ** (k - 1.0)
        raise ValueError(f"unknown schedule {self.kind!r}")

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t, the probability that a token is still unmasked at time t. t (...) -> (...)."""
        return (1.0 - 2 * self.eps) * self._a(t) + self.eps

    def dalpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha'_t in closed form (the tests compare it with autograd)."""
        return (1.0 - 2 * self.eps) * self._da(t)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """alpha'_t / (1 - alpha_t) <= 0 (official dgamma_times_alpha); -1/t for 'linear' with eps = 0."""
        return self.dalpha(t) / (1.0 - self.alpha(t))


def forward_mask(
    x: torch.Tensor, alpha_t: torch.Tensor, *, mask_id: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z_t ~ q(z_t | x): keep each token with probability alpha_t, else [MASK]. x (B, N), alpha_t (B,) -> (B, N)."""
    keep = torch.rand(x.shape, generator=generator, dtype=torch.float64) < alpha_t.double().view(-1, 1)
    return torch.where(keep, x, torch.full_like(x, mask_id))


def sample_times(
    batch: int, *, antithetic: bool = True, generator: torch.Generator | None = None, dtype=torch.float64
) -> torch.Tensor:
    """t (B,) in [0, 1). antithetic=True: the official shifted lattice (u + b / B) mod 1, one u per batch."""
    if antithetic:
        u = torch.rand((), generator=generator, dtype=dtype)
        return torch.remainder(u + torch.arange(batch, dtype=dtype) / batch, 1.0)
    return torch.rand(batch, generator=generator, dtype=dtype)


def masked_log_likelihood(log_probs: torch.Tensor, x: torch.Tensor, z: torch.Tensor, *, mask_id: int) -> torch.Tensor:
    """sum over masked positions n of log mu_{x^n}: log_probs (B, N, V or V + 1), x, z (B, N) -> (B,)."""
    ll = log_probs.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (B, N) log mu(z_t)_{x^n}
    return torch.where(z == mask_id, ll, torch.zeros_like(ll)).sum(-1)


def diffusion_loss(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    mask_id: int,
    schedule: Schedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-sample estimate of L_inf's integrand at times t: w(t) sum_masked log mu_{x^n}. x (B, N), t (B,) -> (B,)."""
    z = forward_mask(x, schedule.alpha(t), mask_id=mask_id, generator=generator)  # (B, N)
    log_probs = F.log_softmax(logits_fn(z, t).double(), dim=-1)  # (B, N, V)
    return schedule.weight(t).double() * masked_log_likelihood(log_probs, x, z, mask_id=mask_id)


def discrete_time_loss(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    num_steps: int,
    mask_id: int,
    schedule: Schedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-sample estimate of L_T: t (B,) in [0, 1) snapped to the grid {1/T, .., 1} as in the official code.

    Returns T (alpha_s - alpha_t) / (1 - alpha_t) sum_masked -log mu_{x^n}, (B,).
    """
    t = (torch.floor(t * num_steps) + 1) / num_steps  # (B,) on the grid
    s = t - 1.0 / num_steps
    a_t, a_s = schedule.alpha(t).double(), schedule.alpha(s).double()
    z = forward_mask(x, a_t, mask_id=mask_id, generator=generator)
    log_probs = F.log_softmax(logits_fn(z, t).double(), dim=-1)
    return -num_steps * (a_s - a_t) / (1.0 - a_t) * masked_log_likelihood(log_probs, x, z, mask_id=mask_id)


def reconstruction_loss(num_tokens: int, vocab_size: int, schedule: Schedule) -> float:
    """Official recon_loss: N (1 - alpha_0) log V, the first-step gap with a uniform guess (0 for eps = 0)."""
    return float(num_tokens * (1.0 - schedule.alpha(torch.tensor(0.0, dtype=torch.float64))) * math.log(vocab_size))


def prior_loss(num_tokens: int, vocab_size: int, schedule: Schedule) -> float:
    """App. E: KL(q(z_1 | x) || p(z_1)) = N alpha_1 log V for the prior alpha_1 / V per class (0 for eps = 0)."""
    return float(num_tokens * schedule.alpha(torch.tensor(1.0, dtype=torch.float64)) * math.log(vocab_size))


def masked_diffusion_nll_bound(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    *,
    mask_id: int,
    schedule: Schedule,
    n_t: int = 16,
    generator: torch.Generator | None = None,
    antithetic: bool = True,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Monte Carlo negative ELBO, nats per sequence (B,): L_inf averaged over n_t times per sequence,
    plus the reconstruction (App. D) and prior (App. E) terms when vocab_size is given.

    logits_fn(z_t, t) gets z_t (B * n_t, N) int64 with [MASK] = mask_id and t (B * n_t,) float64 and
    returns logits over the data classes (B * n_t, N, V); a column for [MASK] is allowed (it is never
    the target). With antithetic=True each sequence's n_t times form the shifted lattice. Unbiased
    for L_inf; divide by N log 2 for bits per token. Gradients flow to logits_fn's parameters.
    """
    b, n = x.shape
    t = torch.cat([sample_times(n_t, antithetic=antithetic, generator=generator) for _ in range(b)])  # (B n_t,)
    xs = x.repeat_interleave(n_t, dim=0)  # (B n_t, N), rows of one sequence are adjacent
    terms = diffusion_loss(logits_fn, xs, t, mask_id=mask_id, schedule=schedule, generator=generator)
    bound = terms.view(b, n_t).mean(1)
    if vocab_size is not None:
        bound = bound + reconstruction_loss(n, vocab_size, schedule) + prior_loss(n, vocab_size, schedule)
    return bound


def exact_denoiser(support: torch.Tensor, probs: torch.Tensor, *, mask_id: int, vocab_size: int) -> LogitsFn:
    """The optimal mu for a distribution listed in full: support (S, N) int64 sequences, probs (S,).

    The returned logits_fn(z_t, t) gives log q(x^n = v | the unmasked tokens of z_t) (B, N, V), the
    same at every t; a test oracle for small V ** N (and a baseline for toy experiments).
    """
    support, probs = support.long(), probs.double() / probs.double().sum()
    onehot = F.one_hot(support, vocab_size).double()  # (S, N, V)

    def logits_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        agree = (z[:, None, :] == mask_id) | (z[:, None, :] == support[None])  # (B, S, N)
        w = probs[None] * agree.all(-1).double()  # (B, S) q(x) [x consistent with z]
        post = torch.einsum("bs,snv->bnv", w, onehot) / w.sum(-1).clamp_min(1e-300)[:, None, None]
        return post.clamp_min(1e-300).log()  # (B, N, V)

    return logits_fn


# ---------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------


def sampling_grid(num_steps: int, *, grid: str = "uniform") -> torch.Tensor:
    """Times t_0 = 1 > t_1 > .. > t_T = 0 (T + 1,) float64; 'cosine' maps u to cos(pi/2 (1 - u)) (official)."""
    u = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    if grid == "cosine":
        return torch.cos(math.pi / 2 * (1.0 - u))
    if grid != "uniform":
        raise ValueError(f"unknown grid {grid!r}")
    return u


def ancestral_step(
    z_t: torch.Tensor,
    probs: torch.Tensor,
    alpha_s: torch.Tensor,
    alpha_t: torch.Tensor,
    *,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z_s ~ p(z_s | z_t): z_t (B, N), probs mu_theta (B, N, V) over the data classes, alpha_s/alpha_t scalars.

    Masked positions draw from [(alpha_s - alpha_t) mu, 1 - alpha_s] / (1 - alpha_t) over V + 1 outcomes
    (the last is "stay masked"); unmasked positions are carried over.
    """
    unmask = ((alpha_s - alpha_t) / (1.0 - alpha_t)).double()
    stay = torch.ones_like(probs[..., :1], dtype=torch.float64) * (1.0 - unmask)  # (B, N, 1)
    draw = sample_categorical(torch.cat([unmask * probs.double(), stay], dim=-1), generator)  # (B, N) in 0..V
    draw = torch.where(draw == probs.shape[-1], torch.full_like(draw, mask_id), draw)
    return torch.where(z_t == mask_id, draw, z_t)


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, N) int64 data classes
    forward_passes: int  # calls of logits_fn


@torch.no_grad()
def sample(
    logits_fn: LogitsFn,
    shape: tuple[int, int],
    *,
    mask_id: int,
    schedule: Schedule,
    num_steps: int,
    generator: torch.Generator | None = None,
    grid: str = "cosine",
) -> Samples:
    """Ancestral sampling from all-[MASK] at t = 1 down to t = 0 on `grid`, one model call per step.

    grid="cosine" is Eq. 6 (the official configs' sampling_grid, also with the linear schedule); "uniform" is t = i/T.

    Tokens still masked at the end (possible when alpha_0 < 1) take the model's most likely class at
    t = 0, as the official decode does. logits_fn returns (B, N, V) logits over the data classes.
    """
    times = sampling_grid(num_steps, grid=grid)
    z = torch.full(shape, mask_id, dtype=torch.long)
    b = shape[0]
    for i in range(num_steps):
        t, s = times[i], times[i + 1]
        probs = F.softmax(logits_fn(z, t.expand(b)).double(), dim=-1)  # (B, N, V)
        z = ancestral_step(z, probs, schedule.alpha(s), schedule.alpha(t), mask_id=mask_id, generator=generator)
    passes = num_steps
    left = z == mask_id
    if left.any():
        final = logits_fn(z, torch.zeros(b, dtype=torch.float64)).argmax(-1)
        z = torch.where(left, final, z)
        passes += 1
    return Samples(z, passes)
