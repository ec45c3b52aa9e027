"""Reparameterized absorbing discrete diffusion (RADD): the concrete score as a time scalar times a clean conditional.

Paper and note:
    - RADD, Ou, Nie, Xue, Zhu, Sun, Li and Li 2025, "Your Absorbing Discrete Diffusion Secretly Models
      the Conditional Distributions of Clean Data" (papers/ou2025absorbing.md); official code
      ML-GSAI/RADD @60b772d, whose losses.get_loss_fn (t_DSE, t_DCE, lambda_DCE, k_DCE, ar_loss),
      noise_lib.add_noise_{t, lambda, k} and sampling.DiffusionSampler.direct_sample this module follows.
    - The absorbing process, the score entropy and the noise schedule are SEDD's and are imported from
      reference_impls/sedd.py (papers/lou2024discrete.md); MD4's bound (reference_impls/md4.py,
      papers/shi2024simplified.md) takes a RADD denoiser through as_md4_logits_fn.

The factorisation (the paper's first result). For the absorbing process of sedd.py with total
noise sigma = bar sigma(t), a masked position i of x_t and a data class y, the concrete score is
    p_t(x_t with x^i = y) / p_t(x_t) = e^{-sigma} / (1 - e^{-sigma}) * p_0(x^i = y | x_t^UM),
where x_t^UM are the unmasked tokens of x_t and p_0(. | x_t^UM) the conditional of clean data: the
time enters only through the scalar (= sedd.score_scale), the conditional not at all. So a network
c_theta(x_t) ~ p_0(x^i | x_t^UM) without a time input suffices (score_from_conditional), and its
output can be cached across sampling steps in which x_t does not change (sample).

The losses (losses.py). Put the factorised score into SEDD's denoising score entropy at a masked
position: sum_y r c_y - r log(r c_{x_0}) + r log r - r = -r log c_{x_0} for a normalised c (r =
1 / (e^sigma - 1)). So the DSE bound becomes a denoising cross-entropy, and changes of variable give
the four equal forms (for eps = 0, all masked at t = 1; per sequence x_0 of length L):
    t-DSE      int_0^1 sigma'(t) E_{x_t} sum_{i masked} DSE_i dt                      (sedd.dwdse_loss)
    t-DCE      int_0^1 sigma'(t) e^{-sigma} / (1 - e^{-sigma}) E_{x_t} sum_{i masked} -log c(x_0^i | x_t) dt
    lambda-DCE int_0^1 (1 / lambda) E_{x_lambda} sum_{i masked} -log c(x_0^i | x_lambda) d lambda
               (each token masked independently with probability lambda)
    k-DCE      E_{k ~ U{1..L}} (L / k) E_{x_k} sum_{i masked} -log c(x_0^i | x_k)
               (x_k: k positions masked, chosen uniformly)
    AO-AR      E_{pi ~ U(S_L)} sum_{l=1}^{L} -log c(x_0^{pi(l)} | x_0^{pi(<l)})   (any-order autoregressive NLL)
The last equality (the paper's second result: the bound as an expected any-order autoregressive NLL)
holds because a uniform k-subset of masked positions is the set pi(>= L - k + 1) of a uniform order.

Sampler (direct_sample). All [MASK] at t = 1; at each of `steps` times t_n = linspace(1, eps)
every masked position is unmasked with probability
    tweedie  (e^{-sigma(t - dt)} - e^{-sigma(t)}) / (1 - e^{-sigma(t)})
    euler    dt sigma'(t) e^{-sigma(t)} / (1 - e^{-sigma(t)})
and then draws its class from c_theta(x_t); at the last step every remaining mask is filled. The
network is re-run only for the sequences that changed at the previous step.

Notation (code -> paper):
    log_cond      log c_theta(x_t) ~ log p_0(x^i | x_t^UM), (B, L, K)   scale  e^{-sigma} / (1 - e^{-sigma})
    sigma         bar sigma(t)    lam  lambda    k  number of masked tokens    order  pi
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from reference_impls.ar_prior import sample_from_probs
from reference_impls.maskgit import MaskedTransformer
from reference_impls.sedd import all_sequences, loglinear_noise, mask_probability, score_scale

LogCondFn = Callable[[torch.Tensor], torch.Tensor]  # x_t (B, L) -> log c_theta (B, L, K); no time input


# ----------------------------------------------------------------------------- the factorised score


def score_from_conditional(
    log_cond: torch.Tensor, sigma: torch.Tensor, x_t: torch.Tensor, *, mask_index: int
) -> torch.Tensor:
    """log s(x_t, t) = log scale(sigma) + log c at masked positions, (B, L, K + 1); sigma (B, 1).

    The [MASK] column and the unmasked positions are 0 (ratio 1, unused), as sedd.absorbing_dse expects.
    """
    out = torch.zeros(*x_t.shape, mask_index + 1, dtype=log_cond.dtype)
    log_score = log_cond + score_scale(sigma).log()[..., None].to(log_cond.dtype)  # (B, L, K)
    out[..., :mask_index] = torch.where((x_t == mask_index)[..., None], log_score, torch.zeros_like(log_score))
    return out


def exact_conditional(p0: torch.Tensor, x_t: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """p_0(x^i = y | x_t^UM) by enumeration of the K^L clean sequences, (B, L, K); p0 (K^L,).

    At an unmasked position the conditional is the one-hot of the observed token.
    """
    clean = all_sequences(num_classes, x_t.shape[-1])  # (K^L, L)
    visible = x_t != num_classes  # (B, L)
    agrees = ((clean[None] == x_t[:, None]) | ~visible[:, None]).all(dim=-1)  # (B, K^L) consistent with x_t^UM
    w = agrees.to(torch.float64) * p0.to(torch.float64)[None]  # (B, K^L)
    onehot = torch.nn.functional.one_hot(clean, num_classes).to(torch.float64)  # (K^L, L, K)
    joint = torch.einsum("bn,nlk->blk", w, onehot)
    return joint / w.sum(dim=-1)[:, None, None]


# ----------------------------------------------------------------------------- the time-free denoiser


class RADDDenoiser(nn.Module):
    """c_theta(x_t): log-probabilities over the K data classes at every position, no time input.

    The bidirectional network is MaskGIT's (reference_impls.maskgit.MaskedTransformer, input
    vocabulary K + 1), followed by the log-softmax of the official RADD.forward.
    """

    def __init__(self, num_classes: int, length: int, *, dim: int = 32, depth: int = 1, n_heads: int = 2):
        super().__init__()
        self.net = MaskedTransformer(num_classes, length, dim=dim, depth=depth, n_heads=n_heads)

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t).log_softmax(dim=-1)  # (B, L, K)


def as_md4_logits_fn(log_cond_fn: LogCondFn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The time-free denoiser as md4.py's logits_fn(z_t, t): t is ignored.

    md4.masked_diffusion_nll_bound then estimates the bound of a RADD model under any of MD4's
    schedules; with a time-free denoiser its value is the same for every schedule (lambda = 1 - alpha_t).
    """
    return lambda z_t, t: log_cond_fn(z_t)


# ----------------------------------------------------------------------------- losses on given masks


def masked_cross_entropy(log_cond: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, *, mask_index: int):
    """sum over masked positions of -log c(x_0^i | x_t), (B,)."""
    nll = -log_cond.gather(-1, x0[..., None]).squeeze(-1)  # (B, L)
    return torch.where(x_t == mask_index, nll, torch.zeros_like(nll)).sum(dim=-1)


def t_dce(log_cond, x_t, x0, sigma, dsigma, *, mask_index: int) -> torch.Tensor:
    """sigma'(t) e^{-sigma} / (1 - e^{-sigma}) sum_masked -log c; sigma, dsigma (B,) -> (B,) (t_DCE_loss)."""
    return dsigma * score_scale(sigma) * masked_cross_entropy(log_cond, x_t, x0, mask_index=mask_index)


def lambda_dce(log_cond, x_t, x0, lam, *, mask_index: int) -> torch.Tensor:
    """(1 / lambda) sum_masked -log c; lam (B,) -> (B,) (lambda_DCE_loss)."""
    return masked_cross_entropy(log_cond, x_t, x0, mask_index=mask_index) / lam


def k_dce(log_cond, x_t, x0, *, mask_index: int) -> torch.Tensor:
    """(L / k) sum_masked -log c with k the number of masked positions of each row, (B,) (k_DCE_loss)."""
    k = (x_t == mask_index).sum(dim=-1)
    return masked_cross_entropy(log_cond, x_t, x0, mask_index=mask_index) * x0.shape[-1] / k


def any_order_nll(log_cond_fn: LogCondFn, x0: torch.Tensor, order: list[int], *, mask_index: int) -> torch.Tensor:
    """sum_l -log c(x_0^{pi(l)} | x_0^{pi(<l)}) for one order pi, (B,) (ar_loss with a given order)."""
    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    for step, pos in enumerate(order):
        x = x0.clone()
        x[:, order[step:]] = mask_index  # position pi(l) and every later one masked
        total = total - log_cond_fn(x)[:, pos].gather(-1, x0[:, pos, None]).squeeze(-1)
    return total


def expected_any_order_nll(log_cond_fn: LogCondFn, x0: torch.Tensor, *, mask_index: int) -> torch.Tensor:
    """The AO-AR NLL averaged over all L! orders, (B,): exact, for small L only."""
    orders = list(itertools.permutations(range(x0.shape[-1])))
    return sum(any_order_nll(log_cond_fn, x0, list(o), mask_index=mask_index) for o in orders) / len(orders)


# ----------------------------------------------------------------------------- one-sample losses


def mask_each(x0: torch.Tensor, prob: torch.Tensor, *, mask_index: int, generator: torch.Generator | None = None):
    """Mask every token independently with probability prob (B,) (add_noise_lambda; add_noise_t at 1 - e^{-sigma})."""
    u = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
    return torch.where(u < prob[:, None], mask_index, x0)


def mask_k(x0: torch.Tensor, k: torch.Tensor, *, mask_index: int, generator: torch.Generator | None = None):
    """Mask exactly k (B,) positions of each row, the set uniform (add_noise_k)."""
    ranks = torch.rand(x0.shape, generator=generator).argsort(dim=-1).argsort(dim=-1)  # a uniform permutation
    return torch.where(ranks < k[:, None], mask_index, x0)


def lambda_dce_loss(log_cond_fn: LogCondFn, x0: torch.Tensor, *, mask_index: int, generator=None) -> torch.Tensor:
    """lambda ~ U(0, 1), x_lambda, lambda-DCE: an unbiased estimate of the bound, (B,)."""
    lam = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
    x_t = mask_each(x0, lam, mask_index=mask_index, generator=generator)
    return lambda_dce(log_cond_fn(x_t), x_t, x0, lam, mask_index=mask_index)


def k_dce_loss(log_cond_fn: LogCondFn, x0: torch.Tensor, *, mask_index: int, generator=None) -> torch.Tensor:
    """k ~ U{1..L}, k uniform positions masked, k-DCE: an unbiased estimate of the bound, (B,)."""
    k = torch.randint(1, x0.shape[-1] + 1, (x0.shape[0],), generator=generator)
    x_t = mask_k(x0, k, mask_index=mask_index, generator=generator)
    return k_dce(log_cond_fn(x_t), x_t, x0, mask_index=mask_index)


def t_dce_loss(
    log_cond_fn: LogCondFn,
    x0: torch.Tensor,
    *,
    mask_index: int,
    noise: Callable = loglinear_noise,
    sampling_eps: float = 1e-3,
    generator=None,
) -> torch.Tensor:
    """t ~ U(sampling_eps, 1), x_t from the absorbing process, t-DCE, (B,)."""
    t = (1 - sampling_eps) * torch.rand(x0.shape[0], generator=generator, dtype=torch.float64) + sampling_eps
    sigma, dsigma = noise(t)
    x_t = mask_each(x0, mask_probability(sigma), mask_index=mask_index, generator=generator)
    return t_dce(log_cond_fn(x_t), x_t, x0, sigma, dsigma, mask_index=mask_index)


# ----------------------------------------------------------------------------- cached sampler


def update_probability(t: float, dt: float, *, method: str, noise: Callable = loglinear_noise) -> float:
    """Probability that a masked position is unmasked in the step from t to t - dt (get_update_rate)."""
    t_now = torch.tensor(t, dtype=torch.float64)
    sigma, dsigma = noise(t_now)
    if method == "tweedie":
        next_sigma = noise(t_now - dt)[0]
        return float((torch.exp(-next_sigma) - torch.exp(-sigma)) / mask_probability(sigma))
    if method == "euler":
        return float(dt * dsigma * torch.exp(-sigma) / mask_probability(sigma))
    raise ValueError(f"unknown method {method!r}")


@torch.no_grad()
def sample(
    log_cond_fn: LogCondFn,
    shape: tuple[int, int],
    *,
    mask_index: int,
    steps: int,
    method: str = "tweedie",
    noise: Callable = loglinear_noise,
    eps: float = 1e-5,
    cache: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """direct_sample: returns the tokens (B, L) and the number of sequences the network was run on.

    With cache=True the network is re-run only for the rows that changed at the previous step (the
    output of a time-free network on an unchanged x_t is unchanged); cache=False runs it every step.
    """
    x = torch.full(shape, mask_index, dtype=torch.long)
    times = torch.linspace(1, eps, steps + 1, dtype=torch.float64)
    dt = (1 - eps) / steps
    probs_cond = torch.zeros(*shape, mask_index, dtype=torch.float64)
    changed = torch.ones(shape[0], dtype=torch.bool)
    evaluated = 0
    for i in range(steps):
        rate = update_probability(float(times[i]), dt, method=method, noise=noise) if i < steps - 1 else 1.0
        run = changed if cache else torch.ones_like(changed)
        if run.any():
            probs_cond[run] = log_cond_fn(x[run]).exp().to(torch.float64)
            evaluated += int(run.sum())
        row = torch.cat([rate * probs_cond, torch.full((*shape, 1), max(1.0 - rate, 0.0), dtype=torch.float64)], -1)
        drawn = sample_from_probs(row, generator)  # (B, L), [MASK] = stay
        new = torch.where(x == mask_index, drawn, x)
        changed = (new != x).any(dim=-1)
        x = new
    return x, evaluated
