"""Masked visual token modelling and iterative parallel decoding (MaskGIT).

Papers and notes:
    - MaskGIT, Chang et al. 2022 (papers/chang2022maskgit.md): the training mask drawn from the
      mask scheduling function, the bidirectional transformer and iterative decoding.
    - Reused by Muse (reference_impls/muse.py, papers/chang2023muse.md), Phenaki
      (reference_impls/phenaki.py, papers/villegas2023phenaki.md) and MAGVIT
      (reference_impls/magvit.py, papers/yu2023magvit.md).

Equations implemented:
    mask schedule (cosine)   gamma(r) = cos(pi r / 2),   gamma(0) = 1, gamma(1) = 0
    training mask            r ~ U[0, 1),  n = ceil(gamma(r) N) positions chosen uniformly
                             without replacement are replaced by [MASK]
    loss                     L = - sum_{i masked} log p(y_i | Y_M)   (masked positions only)
    decoding, step t = 1..T  sample y_i ~ p_i for every unknown position, confidence
                             c_i = log p_i(y_i) + tau (1 - t/T) g_i, g_i ~ Gumbel(0, 1)
                             (known positions: c_i = +inf), then re-mask the
                             n_t = ceil(gamma(t/T) N_0) unknown positions of lowest confidence;
                             n_T = 0, so after T steps nothing is masked.

Notation (code -> paper):
    tokens        Y = [y_i], the VQ token indices     num_codes   K (codebook size)
    mask_id       the [MASK] token (index K)          steps       T (decoding iterations)
    gamma         gamma, mask scheduling function     n_unknown   N_0 (masked at the start)
    choice_temperature   tau, the annealed noise on the confidence (temperature annealing)

The decoder takes any `logits_fn(tokens, step) -> (B, N, K)`, so conditioning (class, text
with guidance, video condition tokens) stays with the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.attention import TransformerBlock
from reference_impls.gumbel import sample_gumbel

LogitsFn = Callable[[torch.Tensor, int], torch.Tensor]


# ----------------------------------------------------------------------------- schedule


def cosine_schedule(r: float | torch.Tensor) -> float | torch.Tensor:
    """gamma(r) = cos(pi r / 2): fraction of tokens still masked at progress r in [0, 1]."""
    if isinstance(r, torch.Tensor):
        return torch.cos(math.pi / 2 * r)
    return math.cos(math.pi / 2 * r)


def masked_count(r: float, n: int, gamma: Callable = cosine_schedule) -> int:
    """ceil(gamma(r) n), with gamma(1) read as exactly 0 (cos(pi/2) is 6e-17 in floating point)."""
    if r >= 1.0:
        return 0
    return min(n, math.ceil(gamma(r) * n - 1e-9))


def schedule_counts(n_unknown: int, steps: int, gamma: Callable = cosine_schedule) -> list[int]:
    """Tokens still masked after each decoding step t = 1..T: n_t = ceil(gamma(t/T) N_0).

    Clipped to n_t <= n_{t-1} - 1 so every step fixes at least one token (the schedule only
    needs this when T is close to N_0); n_T = 0.
    """
    counts, prev = [], n_unknown
    for t in range(1, steps + 1):
        n_t = max(0, min(masked_count(t / steps, n_unknown, gamma), prev - 1))
        counts.append(n_t)
        prev = n_t
    return counts


# ----------------------------------------------------------------------------- training


def training_mask(
    batch: int,
    n: int,
    generator: torch.Generator | None = None,
    gamma: Callable = cosine_schedule,
    ratio: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, N) bool, True = masked. Per example r ~ U[0, 1) and ceil(gamma(r) N) random positions.

    `ratio` (B,) fixes r instead of sampling it.
    """
    r = torch.rand(batch, generator=generator) if ratio is None else ratio  # (B,)
    k = torch.tensor([masked_count(float(x), n, gamma) for x in r])  # (B,)
    k = k.clamp(min=1)  # at least one target per example
    scores = torch.rand(batch, n, generator=generator)  # (B, N)
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, N) rank of each position
    return rank < k[:, None]


def apply_mask(tokens: torch.Tensor, mask: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Replace the masked positions of tokens (B, N) by mask_id."""
    return tokens.masked_fill(mask, mask_id)


def masked_token_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only. logits (B, N, K), tokens (B, N), mask (B, N)."""
    ce = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # (B, N)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


# ----------------------------------------------------------------------------- transformer


class MaskedTransformer(nn.Module):
    """Bidirectional transformer over N token positions; input vocabulary K + 1 (with [MASK]).

    Optional class conditioning by a prefix token (num_classes > 0), as in class-conditional
    MaskGIT. forward(tokens (B, N), labels (B,) | None) -> logits (B, N, K).
    """

    def __init__(
        self, num_codes: int, n_tokens: int, dim: int = 64, depth: int = 2, n_heads: int = 4, num_classes: int = 0
    ):
        super().__init__()
        self.num_codes, self.mask_id = num_codes, num_codes
        self.tok = nn.Embedding(num_codes + 1, dim)
        self.cls = nn.Embedding(num_classes, dim) if num_classes else None
        self.pos = nn.Parameter(0.02 * torch.randn(n_tokens + (1 if num_classes else 0), dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.tok(tokens)  # (B, N, D)
        if self.cls is not None:
            x = torch.cat([self.cls(labels)[:, None], x], dim=1)  # (B, 1 + N, D)
        x = x + self.pos[: x.shape[1]]
        for blk in self.blocks:
            x = blk(x)  # no attention mask: every position sees every other
        x = self.ln(x)
        if self.cls is not None:
            x = x[:, 1:]
        return self.head(x)  # (B, N, K)


# ----------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode(
    logits_fn: LogitsFn,
    tokens: torch.Tensor,
    unknown: torch.Tensor,
    mask_id: int,
    steps: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    choice_temperature: float = 4.5,
    gamma: Callable = cosine_schedule,
    fill: torch.Tensor | None = None,
    history: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Iterative parallel decoding; exactly `steps` calls of logits_fn.

    tokens  (B, N) int64: the known tokens (anything at unknown positions)
    unknown (B, N) bool:  positions to generate; every row must hold the same count N_0
    fill    (B, N) int64: what the network sees at a still-unknown position (default [MASK];
            MAGVIT's COMMIT puts condition tokens there)
    history: if a list, receives the (B, N) unknown mask after every step.
    Returns (B, N) tokens with no unknown position left.
    """
    tokens, unknown = tokens.clone(), unknown.clone()
    fill = torch.full_like(tokens, mask_id) if fill is None else fill
    n0 = int(unknown[0].sum())
    if not bool((unknown.sum(dim=1) == n0).all()):
        raise ValueError("every example must start with the same number of unknown tokens")
    counts = schedule_counts(n0, steps, gamma)
    for t in range(steps):
        logits = logits_fn(torch.where(unknown, fill, tokens), t).float()  # (B, N, K)
        sampled = sample_from_logits(logits / temperature, generator)  # (B, N), y_i ~ p_i
        sampled = torch.where(unknown, sampled, tokens)  # fixed tokens never change
        conf = F.log_softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]  # (B, N) log p(y_i)
        progress = (t + 1) / steps
        conf = conf + choice_temperature * (1.0 - progress) * sample_gumbel(conf.shape, generator)
        conf = conf.masked_fill(~unknown, float("inf"))  # known tokens are never re-masked
        n_mask = counts[t]
        rank = conf.argsort(dim=1).argsort(dim=1)  # (B, N): 0 = least confident
        tokens = sampled
        unknown = rank < n_mask  # keep the n_t least confident (all previously unknown) masked
        if history is not None:
            history.append(unknown.clone())
    return tokens


def generate(
    model: MaskedTransformer,
    batch: int,
    n_tokens: int,
    steps: int = 8,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **kwargs,
) -> torch.Tensor:
    """Class-conditional (or unconditional) generation from an all-[MASK] canvas: (B, N) tokens."""
    tokens = torch.full((batch, n_tokens), model.mask_id, dtype=torch.long)
    unknown = torch.ones(batch, n_tokens, dtype=torch.bool)
    return decode(lambda x, t: model(x, labels), tokens, unknown, model.mask_id, steps, generator, **kwargs)
