"""Score Entropy Discrete Diffusion (SEDD) on the absorbing graph: concrete score, score entropy, tau-leaping.

Paper and note:
    - SEDD, Lou, Meng and Ermon 2024, "Discrete Diffusion Modeling by Estimating the Ratios of the
      Data Distribution" (papers/lou2024discrete.md); official code louaaron/Score-Entropy-Discrete-Diffusion
      @0605786, whose graph_lib.Absorbing, noise_lib.LogLinearNoise, losses.get_loss_fn and
      sampling.{EulerPredictor, AnalyticPredictor, Denoiser} this module follows.

The process. Each of the L positions of a sequence over K data classes runs its own continuous-time
Markov chain with rate sigma'(t) Q, where the absorbing Q sends every data class to [MASK] (index
K, the last state, as in the official code) at rate 1. Its transition e^{sigma Q} keeps a data
token with probability e^{-sigma} and masks it otherwise; sigma(t) = int_0^t sigma'(s) ds.
    log-linear noise   sigma(t) = -log(1 - (1 - eps) t),   sigma'(t) = (1 - eps) / (1 - (1 - eps) t)
so the masking probability 1 - e^{-sigma(t)} = (1 - eps) t is linear in t (eps = 1e-3 in the
official code; eps = 0 masks everything at t = 1).

Concrete score. s(x, t)_{i, y} ~ p_t(x with x^i = y) / p_t(x), for the neighbours y that differ
from x at one position. On the absorbing graph the reverse process only moves a [MASK] position to
a data class, so only the entries of masked positions and data classes y < K are used. The reverse
rate from x to (x^i <- y) is sigma'(t) Q(y, x^i) s(x, t)_{i, y} = sigma'(t) s(x, t)_{i, y}.

Score entropy (K(a) = a (log a - 1)):
    L_SE  = E_{x ~ p} sum_{y != x} w_xy ( s(x)_y - (p(y)/p(x)) log s(x)_y + K(p(y)/p(x)) )
each summand is a log(a / s) - a + s >= 0 with a = p(y)/p(x): the Bregman divergence of
F(u) = u log u between a and s, zero exactly at s = a (score_entropy, bregman parts).
Denoising score entropy replaces the unknown ratio by the conditional ratio of the forward process,
    L_DSE = E_{x_0} E_{x ~ p(. | x_0)} sum_{y != x} w_xy ( s_y - (p(y|x_0)/p(x|x_0)) log s_y + K(p(y|x_0)/p(x|x_0)) ),
which differs from L_SE by a constant independent of s. On the absorbing graph, at a masked
position of x_t, p(y | x_0) / p([MASK] | x_0) = e^{-sigma} / (1 - e^{-sigma}) = 1 / (e^sigma - 1) for
y = x_0^i and 0 otherwise, and w = 1, so (absorbing_dse, = graph_lib.Absorbing.score_entropy)
    DSE_i = sum_{y < K} s_{i, y} - r log s_{i, x_0^i} + K(r),    r = 1 / (e^sigma - 1),
and 0 at unmasked positions. The diffusion-weighted form integrated over time bounds the likelihood:
    -log p_0^theta(x_0) <= int_0^1 sigma'(t) E_{x_t ~ p_t|0(. | x_0)} sum_i DSE_i dt + D_KL(p_1|0(. | x_0) || p_base)
and the official loss is its one-sample Monte Carlo estimate with t ~ U(eps_t, 1), eps_t = 1e-3
(dwdse_loss). With eps = 0 the last term is 0 (p_1 is all [MASK], the base distribution).

Samplers (sampling.py). Time runs from 1 to eps_s on steps + 1 points (linspace), dt = (1 - eps_s) / steps.
    Euler (tau-leaping)   masked position: P(-> y) = dt sigma'(t) s_y, P(stay) = 1 - sum_y of these
                          (official: one_hot(x) + dt sigma' * reverse_rate, the negative stay mass
                          never drawn; here clamped at 0, which draws the same way)
    analytic ("Tweedie")  masked position, from sigma to sigma - dsigma:
                          P(-> y) = (e^{dsigma} - 1) s_y,  P(stay) = 1 - (e^{dsigma} - 1) sum_y s_y
                          (graph.staggered_score * graph.transp_transition written out)
    final denoiser        at t = eps_s, every masked position draws y with P propto s_y (e^sigma - 1),
                          i.e. propto s_y: [MASK] is never kept (Denoiser, probs[..., :-1]).
The unmasked positions never change.

Exact oracle for tests: `marginal` and `exact_log_score` enumerate all K^L clean sequences and
(K + 1)^L noisy ones; they are for L, K of a few only.

Notation (code -> paper):
    sigma, dsigma    bar sigma(t) (total noise) and sigma(t) (its rate); the code's names
    mask_index       the absorbing state [MASK] = K       num_states  K + 1
    log_score        log s_theta(x_t, t), (B, L, K + 1)    ratio       r = 1 / (e^sigma - 1)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch

from reference_impls.ar_prior import sample_from_probs

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, L), sigma (B,)) -> score (B, L, K + 1)


# ----------------------------------------------------------------------------- noise and forward process


def loglinear_noise(t: torch.Tensor, *, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma(t), sigma'(t)) of noise_lib.LogLinearNoise: 1 - e^{-sigma(t)} = (1 - eps) t."""
    sigma = -torch.log1p(-(1 - eps) * t)
    dsigma = (1 - eps) / (1 - (1 - eps) * t)
    return sigma, dsigma


def mask_probability(sigma: torch.Tensor) -> torch.Tensor:
    """Probability that e^{sigma Q} has masked a data token: 1 - e^{-sigma}."""
    return -torch.expm1(-sigma)


def score_scale(sigma: torch.Tensor) -> torch.Tensor:
    """r = e^{-sigma} / (1 - e^{-sigma}) = 1 / (e^sigma - 1): the ratio p(x_0^i | x_0) / p([MASK] | x_0)."""
    return 1 / torch.expm1(sigma)


def perturb(x0: torch.Tensor, sigma: torch.Tensor, *, mask_index: int, generator: torch.Generator | None = None):
    """x_t ~ e^{sigma Q}(. | x_0): each token of x0 (B, L) masked with probability 1 - e^{-sigma}, sigma (B, 1)."""
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
    return torch.where(u < mask_probability(sigma.to(torch.float64)), mask_index, x0)


# ----------------------------------------------------------------------------- losses


def entropy_constant(a: torch.Tensor) -> torch.Tensor:
    """K(a) = a (log a - 1), with K(0) = 0."""
    return torch.xlogy(a, a) - a


def score_entropy(log_score: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_y w_y (s_y - a_y log s_y + K(a_y)) over the last axis; (..., Y) -> (...).

    Each summand is w (a log(a / s) - a + s), the Bregman divergence of u log u between the target
    ratio a and the score s: >= 0, and 0 exactly when s = a (where w > 0).
    """
    s = log_score.exp()
    return (weight * (s - target * log_score + entropy_constant(target))).sum(dim=-1)


def absorbing_dse(
    log_score: torch.Tensor, sigma: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, *, mask_index: int
) -> torch.Tensor:
    """Denoising score entropy per position on the absorbing graph (graph_lib.Absorbing.score_entropy).

    log_score (B, L, K + 1), sigma (B, 1), x_t and x0 (B, L) -> (B, L); 0 where x_t is not [MASK].
    """
    r = score_scale(sigma).expand_as(x_t)  # (B, L)
    masked = x_t == mask_index
    pos = log_score[..., :mask_index].exp().sum(dim=-1)  # (B, L) sum over the K data classes
    neg = r * log_score.gather(-1, x0.clamp(max=mask_index - 1)[..., None]).squeeze(-1)
    return torch.where(masked, pos - neg + entropy_constant(r), torch.zeros_like(pos))


def dwdse_loss(
    log_score_fn: ScoreFn,
    x0: torch.Tensor,
    *,
    mask_index: int,
    noise: Callable = loglinear_noise,
    t: torch.Tensor | None = None,
    sampling_eps: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-sample estimate of the diffusion-weighted DSE per sequence, (B,) (losses.get_loss_fn).

    t ~ (1 - sampling_eps) U(0, 1) + sampling_eps unless given (B,); x_t ~ p_t|0(. | x0);
    loss = sigma'(t) sum_i DSE_i. Its mean over t ~ U(0, 1) and x_t is the time integral of the bound.
    """
    if t is None:
        t = (1 - sampling_eps) * torch.rand(x0.shape[0], generator=generator, dtype=torch.float64) + sampling_eps
    sigma, dsigma = noise(t)
    x_t = perturb(x0, sigma[:, None], mask_index=mask_index, generator=generator)
    log_score = log_score_fn(x_t, sigma)
    return dsigma * absorbing_dse(log_score, sigma[:, None], x_t, x0, mask_index=mask_index).sum(dim=-1)


# ----------------------------------------------------------------------------- exact oracle (tiny spaces)


def all_sequences(num_values: int, length: int) -> torch.Tensor:
    """Every sequence of `length` symbols in 0..num_values - 1, (num_values^length, L), lexicographic."""
    return torch.tensor(list(itertools.product(range(num_values), repeat=length)), dtype=torch.long)


def sequence_index(x: torch.Tensor, num_values: int) -> torch.Tensor:
    """Row of `all_sequences(num_values, L)` holding each sequence of x (..., L) -> (...)."""
    place = num_values ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * place).sum(dim=-1)


def marginal(p0: torch.Tensor, sigma: float, *, num_classes: int, length: int) -> torch.Tensor:
    """p_t over all (K + 1)^L noisy sequences from the data law p0 over all K^L clean ones, (S^L,)."""
    clean = all_sequences(num_classes, length)  # (K^L, L)
    noisy = all_sequences(num_classes + 1, length)  # (S^L, L)
    keep = torch.exp(-torch.tensor(sigma, dtype=torch.float64))
    per_pos = torch.where(
        noisy[:, None, :] == num_classes,
        1 - keep,
        torch.where(noisy[:, None, :] == clean[None, :, :], keep, torch.zeros((), dtype=torch.float64)),
    )  # (S^L, K^L, L): p(x_t^i | x_0^i)
    return per_pos.prod(dim=-1) @ p0.to(torch.float64)


def exact_log_score(p0: torch.Tensor, sigma: float, x_t: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """log p_t(x_t with x^i = y) / p_t(x_t) by enumeration, (B, L, K + 1); 0 at unmasked positions and at [MASK].

    Unmasked positions carry no reverse rate on the absorbing graph, so their entries are unused.
    """
    length = x_t.shape[-1]
    pt = marginal(p0, sigma, num_classes=num_classes, length=length)
    out = torch.zeros(*x_t.shape, num_classes + 1, dtype=torch.float64)
    for i in range(length):
        for y in range(num_classes):
            moved = x_t.clone()
            moved[..., i] = y
            ratio = pt[sequence_index(moved, num_classes + 1)] / pt[sequence_index(x_t, num_classes + 1)]
            out[..., i, y] = torch.where(x_t[..., i] == num_classes, ratio.log(), torch.zeros_like(ratio))
    return out


# ----------------------------------------------------------------------------- samplers


def euler_probs(x: torch.Tensor, score: torch.Tensor, rate_dt: torch.Tensor, *, mask_index: int) -> torch.Tensor:
    """Tau-leaping (Euler) step probabilities (B, L, K + 1) from x (B, L), score (B, L, K + 1), dt sigma'(t) (B, 1).

    Masked position: rate_dt * s_y to data class y, the rest on [MASK] (clamped at 0). Data positions stay.
    """
    jump = rate_dt[..., None] * score[..., :mask_index]  # (B, L, K)
    stay = (1 - jump.sum(dim=-1, keepdim=True)).clamp(min=0)
    masked_row = torch.cat([jump, stay], dim=-1)
    return torch.where((x == mask_index)[..., None], masked_row, _one_hot(x, mask_index + 1, masked_row.dtype))


def analytic_probs(x: torch.Tensor, score: torch.Tensor, dsigma: torch.Tensor, *, mask_index: int) -> torch.Tensor:
    """Analytic (Tweedie tau-leaping) step from sigma to sigma - dsigma, (B, L, K + 1); dsigma (B, 1).

    Masked position: (e^{dsigma} - 1) s_y to data class y, 1 - (e^{dsigma} - 1) sum_y s_y on [MASK].
    """
    jump = torch.expm1(dsigma)[..., None] * score[..., :mask_index]
    stay = (1 - jump.sum(dim=-1, keepdim=True)).clamp(min=0)
    masked_row = torch.cat([jump, stay], dim=-1)
    return torch.where((x == mask_index)[..., None], masked_row, _one_hot(x, mask_index + 1, masked_row.dtype))


def denoise_probs(x: torch.Tensor, score: torch.Tensor, *, mask_index: int) -> torch.Tensor:
    """Final denoising step over the K data classes, (B, L, K): a masked position draws y propto s_y."""
    row = score[..., :mask_index] / score[..., :mask_index].sum(dim=-1, keepdim=True)
    return torch.where((x == mask_index)[..., None], row, _one_hot(x.clamp(max=mask_index - 1), mask_index, row.dtype))


def _one_hot(x: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(x, n).to(dtype)


@torch.no_grad()
def sample(
    score_fn: ScoreFn,
    shape: tuple[int, int],
    *,
    mask_index: int,
    steps: int,
    predictor: str = "euler",
    noise: Callable = loglinear_noise,
    eps: float = 1e-5,
    denoise: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """sampling.get_pc_sampler: all [MASK] at t = 1, `steps` predictor steps to t = eps, then the denoiser.

    score_fn(x (B, L), sigma (B,)) returns the score itself (not its log), (B, L, K + 1).
    """
    x = torch.full(shape, mask_index, dtype=torch.long)
    times = torch.linspace(1, eps, steps + 1, dtype=torch.float64)
    dt = (1 - eps) / steps
    for i in range(steps):
        t = times[i].expand(shape[0])
        sigma, dsigma = noise(t)
        score = score_fn(x, sigma)
        if predictor == "euler":
            probs = euler_probs(x, score, (dt * dsigma)[:, None], mask_index=mask_index)
        elif predictor == "analytic":
            next_sigma = noise(t - dt)[0]
            probs = analytic_probs(x, score, (sigma - next_sigma)[:, None], mask_index=mask_index)
        else:
            raise ValueError(f"unknown predictor {predictor!r}")
        x = sample_from_probs(probs, generator)
    if denoise:
        sigma = noise(times[-1].expand(shape[0]))[0]
        x = sample_from_probs(denoise_probs(x, score_fn(x, sigma), mask_index=mask_index), generator)
    return x
