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
    Q, Qbar          Q_t, \\bar{Q}_t (stacked, (T + 1, S, S))
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

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.ddpm import cosine_betas

X0Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, *S), t (B,)) -> logits (B, *S, K)

_EPS = 1e-30


@dataclass
class DiscreteSchedule:
    """Stacked one-step and cumulative transition matrices of one corruption family.

    Q[t] and Qbar[t] for t = 0..T are (S, S); Q[0] = Qbar[0] = I.
    """

    Q: torch.Tensor  # (T + 1, S, S) float64
    Qbar: torch.Tensor  # (T + 1, S, S) float64
    num_classes: int  # K
    mask_index: int | None  # index of [MASK] (= K) or None

    @property
    def num_steps(self) -> int:
        return self.Q.shape[0] - 1

    @property
    def num_states(self) -> int:
        return self.Q.shape[-1]

    def prior(self) -> torch.Tensor:
        """Distribution of x_T: q(x_T | x_0) averaged over the K data classes, (S,).

        Uniform for the uniform family, all mass on [MASK] when gamma_bar_T (or alpha_bar_T) ends at
        the absorbing state.
        """
        return self.Qbar[-1, : self.num_classes].mean(dim=0)


def _stack_with_identity(mats: torch.Tensor) -> torch.Tensor:
    """(T, S, S) -> (T + 1, S, S) with the identity at index 0."""
    eye = torch.eye(mats.shape[-1], dtype=mats.dtype).unsqueeze(0)
    return torch.cat([eye, mats], dim=0)


def cumulative_product(Q: torch.Tensor) -> torch.Tensor:
    """Eq. 2 computed explicitly: Qbar_t = Q_1 Q_2 ... Q_t for every t. Q (T + 1, S, S) -> (T + 1, S, S)."""
    out = [Q[0]]
    for t in range(1, Q.shape[0]):
        out.append(out[-1] @ Q[t])
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# The three families (constructors). Each builds Q_t from the per-step rates and Qbar_t from the
# closed form; tests check the closed form against cumulative_product(Q).
# ---------------------------------------------------------------------------------------------


def uniform_schedule(betas: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """D3PM-uniform = multinomial diffusion: Q_t = (1 - beta_t) I + beta_t / K. betas (T,)."""
    betas = betas.to(torch.float64)
    k = num_classes
    eye = torch.eye(k, dtype=torch.float64)  # (K, K)
    ones = torch.full((k, k), 1.0 / k, dtype=torch.float64)  # (K, K)
    Q = (1 - betas)[:, None, None] * eye + betas[:, None, None] * ones  # (T, K, K)
    alpha_bars = torch.cumprod(1 - betas, dim=0)  # (T,)
    Qbar = alpha_bars[:, None, None] * eye + (1 - alpha_bars)[:, None, None] * ones  # (T, K, K)
    return DiscreteSchedule(_stack_with_identity(Q), _stack_with_identity(Qbar), k, None)


def absorbing_schedule(betas: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """D3PM-absorbing over K + 1 states: each token moves to [MASK] with probability beta_t and stays there."""
    betas = betas.to(torch.float64)
    k, s = num_classes, num_classes + 1
    eye = torch.eye(s, dtype=torch.float64)  # (S, S)
    to_mask = torch.zeros(s, s, dtype=torch.float64)
    to_mask[:, k] = 1.0  # 1 e_m^T: every row sends its mass to [MASK]

    def build(keep: torch.Tensor) -> torch.Tensor:  # keep (T,) -> (T, S, S)
        return keep[:, None, None] * eye + (1 - keep)[:, None, None] * to_mask

    alpha_bars = torch.cumprod(1 - betas, dim=0)
    return DiscreteSchedule(_stack_with_identity(build(1 - betas)), _stack_with_identity(build(alpha_bars)), k, k)


def _mask_and_replace_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: int) -> torch.Tensor:
    """VQ-Diffusion's mask-and-replace matrix (transposed to rows) for a batch of rates (T,) -> (T, K + 1, K + 1)."""
    t = alpha.shape[0]
    Q = torch.zeros(t, k + 1, k + 1, dtype=torch.float64)
    Q[:, :k, :k] = beta[:, None, None]  # replace: any data class with prob. beta
    idx = torch.arange(k)
    Q[:, idx, idx] = (alpha + beta)[:, None]  # keep: alpha + beta on the diagonal
    Q[:, :k, k] = gamma[:, None]  # mask with prob. gamma
    Q[:, k, k] = 1.0  # [MASK] is absorbing
    return Q


def mask_and_replace_schedule(alpha_bars: torch.Tensor, gamma_bars: torch.Tensor, num_classes: int) -> DiscreteSchedule:
    """VQ-Diffusion's family from the cumulative rates alpha_bar_t, gamma_bar_t (T,) each.

    Per step: alpha_t = alpha_bar_t / alpha_bar_{t-1}, 1 - gamma_t = (1 - gamma_bar_t) / (1 - gamma_bar_{t-1}),
    beta_t = (1 - alpha_t - gamma_t) / K. Qbar_t uses the closed form with beta_bar_t = (1 - alpha_bar_t - gamma_bar_t) / K.
    """
    k = num_classes
    ab = alpha_bars.to(torch.float64)
    gb = gamma_bars.to(torch.float64)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    gb_prev = torch.cat([torch.zeros(1, dtype=torch.float64), gb[:-1]])
    alpha = ab / ab_prev
    gamma = 1 - (1 - gb) / (1 - gb_prev)
    beta = (1 - alpha - gamma) / k
    Q = _mask_and_replace_matrix(alpha, beta, gamma, k)
    Qbar = _mask_and_replace_matrix(ab, (1 - ab - gb) / k, gb, k)
    return DiscreteSchedule(_stack_with_identity(Q), _stack_with_identity(Qbar), k, k)


def mask_and_replace_rates(s: DiscreteSchedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read (alpha_t, beta_t, gamma_t) for t = 1..T back from a mask-and-replace Q: three (T,) tensors."""
    Q = s.Q[1:]  # (T, S, S)
    beta = Q[:, 0, 1] if s.num_classes > 1 else torch.zeros(Q.shape[0], dtype=Q.dtype)
    alpha = Q[:, 0, 0] - beta
    gamma = Q[:, 0, s.num_classes]
    return alpha, beta, gamma


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
# Forward process and posterior
# ---------------------------------------------------------------------------------------------


def _rows(mats: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Matrices (T + 1, S, S) at t (B,) -> (B, 1, ..., 1, S, S) broadcastable to like (B, *shape, S)."""
    m = mats[t].to(like.dtype)  # (B, S, S)
    return m.view(m.shape[0], *([1] * (like.dim() - 2)), *m.shape[1:])


def pad_to_states(x0_probs: torch.Tensor, num_states: int) -> torch.Tensor:
    """Probabilities over K data classes (..., K) -> over S states with zero mass on [MASK] (..., S)."""
    return F.pad(x0_probs, (0, num_states - x0_probs.shape[-1]))


def q_probs(s: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 2: q(x_t | x_0) = x_0 Qbar_t. x0 (B, *shape) int64, t (B,) -> (B, *shape, S) float64."""
    onehot = F.one_hot(x0, s.num_states).to(torch.float64)  # (B, *shape, S)
    return (onehot.unsqueeze(-2) @ _rows(s.Qbar, t, onehot)).squeeze(-2)


def q_step_probs(s: DiscreteSchedule, x_prev: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 1: q(x_t | x_{t-1}) = x_{t-1} Q_t. x_prev (B, *shape) int64 -> (B, *shape, S)."""
    onehot = F.one_hot(x_prev, s.num_states).to(torch.float64)
    return (onehot.unsqueeze(-2) @ _rows(s.Q, t, onehot)).squeeze(-2)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of probs (..., S) -> (...) int64 (ar_prior's categorical draw on log probs)."""
    return sample_from_logits(probs.log(), generator)


def q_sample(s: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t ~ q(x_t | x_0). x0 (B, *shape) int64, t (B,) -> (B, *shape) int64."""
    return sample_categorical(q_probs(s, x0, t), generator)


def q_posterior(s: DiscreteSchedule, x0_probs: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 3 / D3PM Eq. 4: normalise (x_t Q_t^T) * (x0_probs Qbar_{t-1}).

    x0_probs (B, *shape, S): a one-hot x_0 gives the exact posterior q(x_{t-1} | x_t, x_0); a
    distribution p~(x_0 | x_t) gives D3PM's reverse step. xt (B, *shape) int64, t (B,) in 1..T.
    Returns (B, *shape, S) float64.
    """
    x0_probs = x0_probs.to(torch.float64)
    Q_t = _rows(s.Q, t, x0_probs)  # (B, ..., S, S)
    xt_onehot = F.one_hot(xt, s.num_states).to(torch.float64)  # (B, *shape, S)
    fact1 = (xt_onehot.unsqueeze(-2) @ Q_t.transpose(-1, -2)).squeeze(-2)  # x_t Q_t^T: (B, *shape, S)
    fact2 = (x0_probs.unsqueeze(-2) @ _rows(s.Qbar, t - 1, x0_probs)).squeeze(-2)  # x_0 Qbar_{t-1}: (B, *shape, S)
    unnorm = fact1 * fact2
    return unnorm / unnorm.sum(-1, keepdim=True).clamp_min(_EPS)


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
    x0_probs = x0_probs.to(torch.float64)
    Qbar_t = _rows(s.Qbar, t, x0_probs)  # (B, ..., S, S)
    xt_onehot = F.one_hot(xt, s.num_states).to(torch.float64)  # (B, *shape, S)
    q_xt_given_x0 = (xt_onehot.unsqueeze(-2) @ Qbar_t.transpose(-1, -2)).squeeze(-2)  # [x_0] -> q(x_t | x_0): (B, *shape, S)
    w = x0_probs / q_xt_given_x0.clamp_min(_EPS)  # x_0 with q(x_t | x_0) = 0 add nothing below
    return q_posterior(s, w, xt, t)


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def model_x0_probs(s: DiscreteSchedule, x0_model: X0Model, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the model once: (log p~(x_0 | x_t) over K (B, *shape, K), p~ padded to S states (B, *shape, S))."""
    logits = x0_model(xt, t)  # (B, *shape, K)
    log_p = F.log_softmax(logits.float(), dim=-1)
    return log_p, pad_to_states(log_p.exp(), s.num_states)


def vlb_terms(
    s: DiscreteSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, x0_probs: torch.Tensor, weighting: str = "mixture"
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
        _, x0_probs = model_x0_probs(s, x0_model, x, t)
        passes += 1
        x = sample_categorical(p_reverse_probs(s, x0_probs, x, t, weighting), generator)
    return Samples(x, passes)
