"""Discrete diffusion over categorical tokens: transition matrices, posterior, losses and sampler.

One module for four papers (one set of matrices, one posterior):
    - D3PM, Austin et al. 2021 (papers/austin2021structured.md): Eq. 1-4 (forward process,
      cumulative product, posterior, x_0-parameterised reverse step), the uniform and absorbing
      transition matrices, and the hybrid loss L_vb + lambda * CE. The absorbing schedule
      beta_t = 1 / (T - t + 1) (absorbing_betas) is our choice: it masks every token by t = T.
    - Multinomial diffusion, Hoogeboom et al. 2021 (papers/hoogeboom2021argmax.md):
      q(x_t | x_{t-1}) = Cat((1 - beta_t) x_{t-1} + beta_t / K), its closed form
      q(x_t | x_0) = Cat(alpha_bar_t x_0 + (1 - alpha_bar_t) / K) and its posterior. This is the
      uniform family below; the cosine schedule is imported from ddpm.py.
    - VQ-Diffusion, Gu et al. 2022 (papers/gu2022vector.md): the mask-and-replace matrix over
      K + 1 states, its closed-form cumulative, the x_0-parameterised reverse step
      p(x_{t-1} | x_t) = sum_{x_0} q(x_{t-1} | x_t, x_0) p(x_0 | x_t).
    - Diffsound, Yang et al. 2023 (papers/yang2023diffsound.md) reuses the VQ-Diffusion family
      through reference_impls/diffsound.py.

Closed forms, no dense matrices. Every Q_t and Qbar_t of the three families has one shape: a
data row i < K puts a on i itself, b on every data class and c on [MASK], and the [MASK] row stays
on [MASK]:
    M(a, b, c)[i, j] = a [j = i] + b [j < K] + c [j = m]   (i < K),    M[m, j] = [j = m],
with a + K b + c = 1. So a schedule is six (T + 1,) vectors of rates, (a_t, b_t, c_t) for Q_t and
(abar_t, bbar_t, cbar_t) for Qbar_t, and every quantity below is computed over (N, S) rows from
them: a row of M (x M) for the forward process, and the posterior row (x_t Q_t^T) * (p Qbar_{t-1}),
whose first factor takes two values on the data classes and whose second is affine in p there, so
the normalised posterior is written in one pass over the row (see _posterior). O(S) per token.
Memory is O(N S + T), not the O(T S^2) of stacked matrices: at VQ-Diffusion's 2,887 states and
T = 100 those would be 6.7 GB each in float64. The dense (T + 1, S, S) matrices are still
available as `schedule.Q` / `schedule.Qbar` (built on access) and the tests check every closed
form against them; nothing in this module uses them.
    family            a_t            b_t            c_t          abar_t          bbar_t               cbar_t
    uniform           1 - beta_t     beta_t / K     0 (no mask)  prod (1-beta)   (1 - abar_t) / K     0
    absorbing         1 - beta_t     0              beta_t       prod (1-beta)   0                    1 - abar_t
    mask-and-replace  alpha_t        beta_t         gamma_t      alpha_bar_t     beta_bar_t           gamma_bar_t

Conventions. D3PM's row convention: [Q_t]_{ij} = q(x_t = j | x_{t-1} = i), so every row sums to
1 and q(x_t | x_{t-1}) = Cat(x_{t-1} Q_t) for a one-hot row vector x_{t-1}. VQ-Diffusion writes
column vectors, Q_t v(x_{t-1}); its matrix is the transpose of ours. Time is 1-indexed as in the
papers: t = 1..T, and index 0 holds the identity, so Qbar[0] = I means x_0 itself.
The absorbing and mask-and-replace families have S = K + 1 states; the last one (index K) is
[MASK]. The x_0 model always predicts over the K data classes only.

Equations:
    (equation numbers are D3PM's unless marked)
    Eq. 1  q(x_t | x_{t-1}) = Cat(x_{t-1} Q_t)
    Eq. 2  q(x_t | x_0)     = Cat(x_0 Qbar_t),   Qbar_t = Q_1 Q_2 ... Q_t
    Eq. 3  q(x_{t-1} | x_t, x_0) = Cat(x_t Q_t^T * x_0 Qbar_{t-1} / (x_0 Qbar_t x_t^T))
    D3PM Eq. 4   p(x_{t-1} | x_t) propto sum_{x_0} q(x_{t-1}, x_t | x_0) p~(x_0 | x_t)
                 = (x_t Q_t^T) * (p~ Qbar_{t-1})                      weighting="d3pm"
    VQ-Diffusion     p(x_{t-1} | x_t) = sum_{x_0} q(x_{t-1} | x_t, x_0) p~(x_0 | x_t)
                 = the Eq. 3 formula applied to w(x_0) = p~(x_0) / q(x_t | x_0)   weighting="mixture"
    Uniform         Q_t = (1 - beta_t) I + beta_t / K 1 1^T
                    Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) / K 1 1^T, alpha_bar_t = prod (1 - beta_s)
    Absorbing       Q_t = (1 - beta_t) I + beta_t 1 e_m^T        (m = [MASK])
                    Qbar_t = alpha_bar_t I + (1 - alpha_bar_t) 1 e_m^T
    Mask-and-replace  data row i: alpha_t + beta_t at i, beta_t at every other data class,
                      gamma_t at [MASK];  [MASK] row: 1 at [MASK];  alpha_t + K beta_t + gamma_t = 1
                    Qbar_t: same form with alpha_bar_t = prod alpha_s,
                      gamma_bar_t = 1 - prod (1 - gamma_s),  beta_bar_t = (1 - alpha_bar_t - gamma_bar_t) / K
    Hybrid loss     L = L_vb + lambda * E[-log p~(x_0 | x_t)]

Notation (code -> paper symbol):
    Q, Qbar          Q_t, \\bar{Q}_t (dense (T + 1, S, S), the test oracle only)
    keep, spread, to_mask           a_t, b_t, c_t (one step)
    keep_bar, spread_bar, to_mask_bar  abar_t, bbar_t, cbar_t (cumulative)
    num_classes      K (data classes)          num_states   S (K, or K + 1 with [MASK])
    x0_probs         p~_theta(x_0 | x_t)       mask_index   the [MASK] state, K (VQ-Diffusion: K + 1)
    alpha_bars, gamma_bars   \\bar{alpha}_t, \\bar{gamma}_t (VQ-Diffusion)
    lam              lambda (hybrid loss weight)

Sampler API (used by benchmarks): `sample(x0_model, schedule, shape, generator)` runs the
ancestral chain x_T -> x_0 with one model call per step and returns `Samples(tokens,
forward_passes)`. `x0_model(x_t, t)` maps tokens (B, *shape) int64 and times (B,) int64 to
logits (B, *shape, K) over the K data classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_probs
from reference_impls.ddpm import cosine_betas

X0Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, *S), t (B,)) -> logits (B, *S, K)

_EPS = 1e-30


@dataclass
class DiscreteSchedule:
    """The rates of one corruption family, index t = 0..T (index 0 is the identity: a = 1, b = c = 0).

    Q_t = M(keep[t], spread[t], to_mask[t]) and Qbar_t = M(keep_bar[t], spread_bar[t], to_mask_bar[t]),
    each a (T + 1,) float64 vector; see the module docstring for M.
    """

    keep: torch.Tensor  # (T + 1,) a_t
    spread: torch.Tensor  # (T + 1,) b_t
    to_mask: torch.Tensor  # (T + 1,) c_t
    keep_bar: torch.Tensor  # (T + 1,) abar_t
    spread_bar: torch.Tensor  # (T + 1,) bbar_t
    to_mask_bar: torch.Tensor  # (T + 1,) cbar_t
    num_classes: int  # K
    mask_index: int | None  # index of [MASK] (= K) or None

    @property
    def num_steps(self) -> int:
        return self.keep.shape[0] - 1

    @property
    def num_states(self) -> int:
        return self.num_classes + (self.mask_index is not None)

    @property
    def Q(self) -> torch.Tensor:
        """Dense one-step matrices (T + 1, S, S), built on access: the test oracle, O(T S^2) memory."""
        return dense_matrices(self.keep, self.spread, self.to_mask, self.num_classes, self.mask_index)

    @property
    def Qbar(self) -> torch.Tensor:
        """Dense cumulative matrices (T + 1, S, S), built on access: the test oracle, O(T S^2) memory."""
        return dense_matrices(self.keep_bar, self.spread_bar, self.to_mask_bar, self.num_classes, self.mask_index)

    def prior(self) -> torch.Tensor:
        """Distribution of x_T: q(x_T | x_0) averaged over the K data classes, (S,).

        Uniform for the uniform family, all mass on [MASK] when the chain ends at the absorbing state.
        """
        t = self.num_steps
        out = torch.full(
            (self.num_states,), float(self.spread_bar[t] + self.keep_bar[t] / self.num_classes), dtype=torch.float64
        )
        if self.mask_index is not None:
            out[self.mask_index] = self.to_mask_bar[t]
        return out


def _with_identity(keep: torch.Tensor, spread: torch.Tensor, to_mask: torch.Tensor):
    """Prepend t = 0 (a = 1, b = c = 0) to three (T,) rate vectors."""
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return torch.cat([one, keep]), torch.cat([zero, spread]), torch.cat([zero, to_mask])


def dense_matrices(
    keep: torch.Tensor, spread: torch.Tensor, to_mask: torch.Tensor, k: int, mask_index: int | None
) -> torch.Tensor:
    """M(a, b, c) for rate vectors (T + 1,) -> (T + 1, S, S) float64. Only for tests and small notebooks."""
    s = k + (mask_index is not None)
    M = torch.zeros(keep.shape[0], s, s, dtype=torch.float64)
    M[:, :k, :k] = spread[:, None, None]  # b on every data class
    idx = torch.arange(k)
    M[:, idx, idx] += keep[:, None]  # a on the class itself
    if mask_index is not None:
        M[:, :k, mask_index] = to_mask[:, None]  # c on [MASK]
        M[:, mask_index, mask_index] = 1.0  # [MASK] is absorbing
    return M


def cumulative_product(Q: torch.Tensor) -> torch.Tensor:
    """Eq. 2 computed explicitly: Qbar_t = Q_1 Q_2 ... Q_t for every t. Q (T + 1, S, S) -> (T + 1, S, S)."""
    out = [Q[0]]
    for t in range(1, Q.shape[0]):
        out.append(out[-1] @ Q[t])
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# The three families (constructors): per-step rates and the papers' closed-form cumulative rates.
# Tests check the cumulative against cumulative_product of the dense one-step matrices.
# ---------------------------------------------------------------------------------------------


def uniform_schedule(betas: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """D3PM-uniform = multinomial diffusion: Q_t = (1 - beta_t) I + beta_t / K. betas (T,)."""
    betas = betas.to(torch.float64)
    k = num_classes
    alpha_bars = torch.cumprod(1 - betas, dim=0)  # (T,)
    zeros = torch.zeros_like(betas)
    return DiscreteSchedule(
        *_with_identity(1 - betas, betas / k, zeros), *_with_identity(alpha_bars, (1 - alpha_bars) / k, zeros), k, None
    )


def absorbing_schedule(betas: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """D3PM-absorbing over K + 1 states: each token moves to [MASK] with probability beta_t and stays there."""
    betas = betas.to(torch.float64)
    alpha_bars = torch.cumprod(1 - betas, dim=0)  # (T,)
    zeros = torch.zeros_like(betas)
    return DiscreteSchedule(
        *_with_identity(1 - betas, zeros, betas),
        *_with_identity(alpha_bars, zeros, 1 - alpha_bars),
        num_classes,
        num_classes,
    )


def mask_and_replace_schedule(alpha_bars: torch.Tensor, gamma_bars: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """VQ-Diffusion's family from the cumulative rates alpha_bar_t, gamma_bar_t (T,) each.

    Per step: alpha_t = alpha_bar_t / alpha_bar_{t-1}, 1 - gamma_t = (1 - gamma_bar_t) / (1 - gamma_bar_{t-1}),
    beta_t = (1 - alpha_t - gamma_t) / K. Qbar_t uses the closed form with
    beta_bar_t = (1 - alpha_bar_t - gamma_bar_t) / K.
    """
    k = num_classes
    ab = alpha_bars.to(torch.float64)
    gb = gamma_bars.to(torch.float64)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    gb_prev = torch.cat([torch.zeros(1, dtype=torch.float64), gb[:-1]])
    alpha = ab / ab_prev
    gamma = 1 - (1 - gb) / (1 - gb_prev)
    beta = (1 - alpha - gamma) / k
    return DiscreteSchedule(*_with_identity(alpha, beta, gamma), *_with_identity(ab, (1 - ab - gb) / k, gb), k, k)


def mask_and_replace_rates(s: DiscreteSchedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_t, beta_t, gamma_t) for t = 1..T of a mask-and-replace schedule: three (T,) tensors."""
    return s.keep[1:], s.spread[1:], s.to_mask[1:]


# ---------------------------------------------------------------------------------------------
# Schedules of the rates
# ---------------------------------------------------------------------------------------------


def absorbing_betas(num_steps: int) -> torch.Tensor:
    """beta_t = 1 / (T - t + 1), t = 1..T: each step masks an equal share of the tokens left, all are [MASK] at T."""
    t = torch.arange(1, num_steps + 1, dtype=torch.float64)
    return 1.0 / (num_steps - t + 1)


def multinomial_cosine_betas(num_steps: int) -> torch.Tensor:
    """A cosine schedule (Nichol & Dhariwal) for the uniform chain, imported from ddpm.py."""
    return cosine_betas(num_steps)


def vq_diffusion_cumulative(
    num_steps: int,
    alpha_bar_first: float = 0.99999,
    alpha_bar_last: float = 0.000009,
    gamma_bar_first: float = 0.000009,
    gamma_bar_last: float = 0.99999,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear cumulative rates, as in the released VQ-Diffusion code (alpha_schedule):
    alpha_bar_t falls linearly from alpha_bar_first (t = 1) to alpha_bar_last (t = T), gamma_bar_t rises
    from gamma_bar_first to gamma_bar_last, so nearly every token is [MASK] at t = T. (T,) each.
    """
    frac = torch.arange(num_steps, dtype=torch.float64) / max(num_steps - 1, 1)  # (T,) 0..1
    alpha_bars = alpha_bar_first + frac * (alpha_bar_last - alpha_bar_first)
    gamma_bars = gamma_bar_first + frac * (gamma_bar_last - gamma_bar_first)
    return alpha_bars, gamma_bars


# ---------------------------------------------------------------------------------------------
# Forward process and posterior, in closed form over (N, S) rows
# ---------------------------------------------------------------------------------------------


def _rates(rate: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """rate (T + 1,) at t (B,) -> (B, 1, ..., 1) broadcastable to like (B, *shape)."""
    return rate.to(like.device)[t].view(-1, *([1] * (like.dim() - 1)))


def _row(s: DiscreteSchedule, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Row x of M(a, b, c): x (B, *shape) int64, a/b/c (B, 1, ...) -> (B, *shape, S).

    x < K: a [j = x] + b [j < K] + c [j = m];   x = m: [j = m].
    """
    k, m = s.num_classes, s.mask_index
    is_data = x < k  # (B, *shape)
    out = x.new_zeros(*x.shape, s.num_states, dtype=torch.float64)
    out[..., :k] = (b * is_data)[..., None]  # b on every data class (0 for a [MASK] row)
    if m is not None:
        out[..., m] = torch.where(is_data, c, 1.0)  # c, or 1 for the absorbing [MASK] row
    return out.scatter_add_(-1, x[..., None], (a * is_data).expand_as(x)[..., None].to(torch.float64))  # + a [j = x]


def _cumulative(s: DiscreteSchedule, t: torch.Tensor, like: torch.Tensor):
    return _rates(s.keep_bar, t, like), _rates(s.spread_bar, t, like), _rates(s.to_mask_bar, t, like)


def _step(s: DiscreteSchedule, t: torch.Tensor, like: torch.Tensor):
    return _rates(s.keep, t, like), _rates(s.spread, t, like), _rates(s.to_mask, t, like)


def pad_to_states(x0_probs: torch.Tensor, num_states: int) -> torch.Tensor:
    """Probabilities over K data classes (..., K) -> over S states with zero mass on [MASK] (..., S)."""
    return F.pad(x0_probs, (0, num_states - x0_probs.shape[-1]))


def q_probs(s: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 2: q(x_t | x_0) = x_0 Qbar_t, row x_0 of Qbar_t. x0 (B, *shape) int64, t (B,) -> (B, *shape, S) float64."""
    return _row(s, *_cumulative(s, t, x0), x0)


def q_step_probs(s: DiscreteSchedule, x_prev: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 1: q(x_t | x_{t-1}) = x_{t-1} Q_t, row x_{t-1} of Q_t. x_prev (B, *shape) int64 -> (B, *shape, S)."""
    return _row(s, *_step(s, t, x_prev), x_prev)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of probs (..., S) -> (...) int64 (ar_prior's one categorical draw)."""
    return sample_from_probs(probs, generator)


def q_sample(
    s: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x_t ~ q(x_t | x_0). x0 (B, *shape) int64, t (B,) -> (B, *shape) int64."""
    return sample_categorical(q_probs(s, x0, t), generator)


def _posterior(s: DiscreteSchedule, w: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 3's row (x_t Q_t^T) * (w Qbar_{t-1}), normalised, in one pass: w (B, *shape, S) float64.

    With (a, b, c) the rates of Q_t, (A, B, C) = (a_bar, b_bar, c_bar) those of Qbar_{t-1} and
    W = sum_{j < K} w_j (mass):
        w Qbar_{t-1}               A w_j + B W  on data j,       C W + w_m  on [MASK]
        x_t Q_t^T for data x_t     b + a [j = x_t]  on data j,   0          on [MASK]
        x_t Q_t^T for x_t = [MASK] c  on data j,                 1          on [MASK]
    so on the data classes the product is f (A w_j + B W), with f = b or c, plus a (A w_{x_t} + B W)
    at j = x_t; its sum is f (A + K B) W plus those two entries. The row is written normalised by
    one addcmul over (B, *shape, S) and two single-entry corrections.
    """
    k, m = s.num_classes, s.mask_index
    a, b, c = _step(s, t, xt)  # (B, 1, ...) rates of Q_t
    a_bar, b_bar, c_bar = _cumulative(s, t - 1, xt)  # (B, 1, ...) rates of Qbar_{t-1}
    is_data = xt < k  # (B, *shape)
    mass = w[..., :k].sum(-1)  # (B, *shape) W, the mass of w on the data classes
    at = xt.unsqueeze(-1)  # (B, *shape, 1) column x_t; for x_t = [MASK] its extra is 0 and the entry is set below
    extra = a * is_data * (a_bar * w.gather(-1, at).squeeze(-1) + b_bar * mass)  # (B, *shape) added at j = x_t
    f = torch.where(is_data, b, c)  # (B, *shape) x_t Q_t^T on the data classes j != x_t
    total = f * (a_bar + k * b_bar) * mass + extra
    if m is not None:
        to_mask = ~is_data * (c_bar * mass + w[..., m])  # (B, *shape) the [MASK] entry, 0 for a data x_t
        total = total + to_mask
    inv = total.clamp_min(_EPS).reciprocal()  # (B, *shape)
    out = torch.addcmul((f * b_bar * mass * inv).unsqueeze(-1), (f * a_bar * inv).unsqueeze(-1), w)  # (B, *shape, S)
    out.scatter_add_(-1, at, (extra * inv).unsqueeze(-1))
    if m is not None:
        out[..., m] = to_mask * inv
    return out


def q_posterior(s: DiscreteSchedule, x0_probs: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 3 / D3PM Eq. 4: normalise (x_t Q_t^T) * (x0_probs Qbar_{t-1}).

    x0_probs (B, *shape, S): a one-hot x_0 gives the exact posterior q(x_{t-1} | x_t, x_0); a
    distribution p~(x_0 | x_t) gives D3PM's reverse step. xt (B, *shape) int64, t (B,) in 1..T.
    Returns (B, *shape, S) float64.
    """
    return _posterior(s, x0_probs.to(torch.float64), xt, t)


def p_reverse_probs(
    s: DiscreteSchedule, x0_probs: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, weighting: str = "mixture"
) -> torch.Tensor:
    """p_theta(x_{t-1} | x_t) from the model's p~(x_0 | x_t) (B, *shape, S), through the one posterior.

    weighting="d3pm":    D3PM Eq. 4, propto sum_x0 q(x_{t-1}, x_t | x_0) p~(x_0 | x_t).
    weighting="mixture": VQ-Diffusion, sum_x0 q(x_{t-1} | x_t, x_0) p~(x_0 | x_t); the same
                         formula applied to p~(x_0) / q(x_t | x_0), because
                         q(x_{t-1} | x_t, x_0) = (x_t Q_t^T * x_0 Qbar_{t-1}) / q(x_t | x_0).
    Both equal q(x_{t-1} | x_t, x_0) when p~ is one-hot on x_0.
    """
    if weighting == "d3pm":
        return q_posterior(s, x0_probs, xt, t)
    if weighting != "mixture":
        raise ValueError(f"unknown weighting {weighting!r}")
    # q(x_t | x_0) over x_0 is column x_t of Qbar_t (rates A, B, C): for a data x_t, B on data x_0 != x_t,
    # A + B at x_0 = x_t and 0 at [MASK]; for x_t = [MASK], C on data x_0 and 1 at x_0 = [MASK]
    a_bar, b_bar, c_bar = _cumulative(s, t, xt)  # (B, 1, ...) rates of Qbar_t
    is_data = xt < s.num_classes  # (B, *shape)
    p = x0_probs.to(torch.float64)
    off = torch.where(is_data, b_bar, c_bar)  # (B, *shape) q(x_t | x_0) for data x_0 != x_t
    w = p * off.clamp_min(_EPS).reciprocal().unsqueeze(-1)  # (B, *shape, S)
    at = xt.unsqueeze(-1)  # (B, *shape, 1)
    on = torch.where(is_data, a_bar + b_bar, 1.0)  # (B, *shape) q(x_t | x_0 = x_t)
    w.scatter_(-1, at, p.gather(-1, at) / on.clamp_min(_EPS).unsqueeze(-1))
    # for a data x_t, w at x_0 = [MASK] is finite and unused: x_t Q_t^T is 0 on [MASK] and W sums data only
    return _posterior(s, w, xt, t)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def model_x0_probs(
    s: DiscreteSchedule, x0_model: X0Model, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the model once: (log p~(x_0 | x_t) over K (B, *shape, K), p~ padded to S states (B, *shape, S))."""
    logits = x0_model(xt, t)  # (B, *shape, K)
    log_p = F.log_softmax(logits.float(), dim=-1)
    return log_p, pad_to_states(log_p.exp(), s.num_states)


def vlb_terms(
    s: DiscreteSchedule,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t: torch.Tensor,
    x0_probs: torch.Tensor,
    weighting: str = "mixture",
) -> torch.Tensor:
    """Per-example L_{t-1}: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t >= 2, -log p(x_0 | x_1) at t = 1.

    Summed over token positions; x0, xt (B, *shape), t (B,), x0_probs (B, *shape, S). Returns (B,).
    """
    target = q_posterior(s, F.one_hot(x0, s.num_states).to(torch.float64), xt, t)  # (B, *shape, S)
    pred = p_reverse_probs(s, x0_probs, xt, t, weighting)  # (B, *shape, S)
    log_pred = pred.clamp_min(_EPS).log()
    kl = (target * (target.clamp_min(_EPS).log() - log_pred)).sum(-1)  # (B, *shape)
    nll = -log_pred.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, *shape)
    first = (t == 1).view(-1, *([1] * (x0.dim() - 1)))
    return torch.where(first, nll, kl).flatten(1).sum(1)


def hybrid_loss(
    s: DiscreteSchedule,
    x0_model: X0Model,
    x0: torch.Tensor,
    lam: float = 0.01,
    weighting: str = "mixture",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D3PM's L_lambda = L_vb + lambda * E[-log p~(x_0 | x_t)] with t ~ U{1..T}, x_t ~ q(x_t | x_0).

    Returns (loss, vb, ce), each averaged over the batch and per token position.
    """
    b = x0.shape[0]
    n = x0[0].numel()
    t = torch.randint(1, s.num_steps + 1, (b,), generator=generator)  # (B,)
    xt = q_sample(s, x0, t, generator)  # (B, *shape)
    log_p, x0_probs = model_x0_probs(s, x0_model, xt, t)
    vb = vlb_terms(s, x0, xt, t, x0_probs, weighting).mean() / n
    ce = -log_p.gather(-1, x0.unsqueeze(-1)).mean()
    return vb + lam * ce, vb, ce


# ---------------------------------------------------------------------------------------------
# Sampler
# ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    tokens: torch.Tensor  # (B, *shape) int64 data classes in [0, K)
    forward_passes: int  # how many times x0_model was called (one per reverse step)


@torch.no_grad()
def sample(
    x0_model: X0Model,
    schedule: DiscreteSchedule,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    weighting: str = "mixture",
) -> Samples:
    """Ancestral sampling x_T ~ prior, then x_{t-1} ~ p(x_{t-1} | x_t) for t = T..1.

    shape = (B, *token_shape). Each step calls x0_model once, so forward_passes == T.
    """
    s = schedule
    prior = s.prior().expand(*shape, s.num_states)  # (B, *shape, S)
    x = sample_categorical(prior, generator)  # x_T
    passes = 0
    for step in range(s.num_steps, 0, -1):
        t = torch.full((shape[0],), step, dtype=torch.long)
        logits = x0_model(x, t)  # (B, *shape, K)
        passes += 1
        x0_probs = pad_to_states(logits.double().softmax(dim=-1), s.num_states)  # p~(x_0 | x_t) over S states
        x = sample_categorical(p_reverse_probs(s, x0_probs, x, t, weighting), generator)
    return Samples(x, passes)
