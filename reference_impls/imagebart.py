"""ImageBART: a short multinomial-diffusion chain over tokens, each reverse stage an autoregressive model.

Paper and note: ImageBART, Esser et al. 2021 (papers/esser2021imagebart.md). The forward chain
x_0 -> x_1 -> ... -> x_T corrupts the token grid of a VQGAN by redrawing tokens uniformly at random
(multinomial diffusion), so each x_t is a coarser version of x_0. Each reverse stage
p_theta(x_{t-1} | x_t) is an encoder-decoder transformer: the encoder reads the whole noisier x_t
(bidirectional context), the decoder generates x_{t-1} token by token (causal).

What is reused, not copied:
    - the forward chain: reference_impls/discrete_diffusion.py (uniform_schedule, q_sample, q_step_probs;
      papers/hoogeboom2021argmax.md);
    - the causal decoder, its cross-attention and its sampler: reference_impls/ar_prior.py (TokenPrior,
      sample), built on reference_impls/attention.py (TransformerBlock, also the encoder here).

Equations implemented:
    forward     q(x_t | x_{t-1}) = Cat((1 - beta_t) x_{t-1} + beta_t / K),  t = 1..T (T small: a few stages)
    reverse     p_theta(x_{t-1} | x_t) = prod_i p_theta(x_{t-1}^i | x_{t-1}^{<i}, x_t)
    loss        L = sum_t E_{q(x_{t-1}, x_t)} [-log p_theta(x_{t-1} | x_t)]
    sampling    x_T ~ uniform, then for t = T..1 sample x_{t-1} autoregressively given x_t

Notation (code -> paper):
    stages[t - 1]   the transformer of reverse step t     num_codes   K (codebook size)
    noisy           x_t (encoder input)                   target      x_{t-1} (decoder output)
    BOS             start token of the decoder (index K)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls import ar_prior
from reference_impls.ar_prior import TokenPrior
from reference_impls.attention import TransformerBlock
from reference_impls.discrete_diffusion import (
    DiscreteSchedule,
    q_sample,
    q_step_probs,
    sample_categorical,
    uniform_schedule,
)


class Stage(nn.Module):
    """One reverse step p_theta(x_{t-1} | x_t): bidirectional encoder over x_t, causal decoder over x_{t-1}.

    forward(noisy (B, N), target (B, N)) -> logits (B, N, K); logits[:, i] depends on all of noisy and
    on target[:, :i] only (the decoder input is [BOS, target[:, :-1]]).
    """

    def __init__(
        self, num_codes: int, seq_len: int, dim: int = 32, enc_layers: int = 1, dec_layers: int = 1, n_heads: int = 2
    ):
        super().__init__()
        self.num_codes, self.seq_len = num_codes, seq_len
        self.enc_tok = nn.Embedding(num_codes, dim)
        self.enc_pos = nn.Embedding(seq_len, dim)
        self.encoder = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(enc_layers))
        self.decoder = TokenPrior(num_codes + 1, dim, dec_layers, n_heads, seq_len + 1, cross_attention=True)

    @property
    def bos(self) -> int:
        return self.num_codes

    def encode(self, noisy: torch.Tensor) -> torch.Tensor:
        """x_t (B, N) -> memory (B, N, D), full (unmasked) self-attention."""
        h = self.enc_tok(noisy) + self.enc_pos(torch.arange(noisy.shape[1]))
        for block in self.encoder:
            h = block(h, mask=None)
        return h

    def forward(self, noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bos = torch.full((target.shape[0], 1), self.bos, dtype=torch.long)
        dec_in = torch.cat([bos, target[:, :-1]], dim=1)  # (B, N) teacher forcing
        logits = self.decoder(dec_in, context=self.encode(noisy))  # (B, N, K + 1)
        return logits[..., : self.num_codes]  # BOS is never a target


class ImageBART(nn.Module):
    """T stages over a uniform (multinomial) corruption chain of a flattened token grid of length N."""

    def __init__(self, num_codes: int, seq_len: int, betas: torch.Tensor, **stage_kwargs):
        super().__init__()
        self.schedule: DiscreteSchedule = uniform_schedule(betas, num_codes)
        self.stages = nn.ModuleList(Stage(num_codes, seq_len, **stage_kwargs) for _ in range(len(betas)))

    @property
    def num_stages(self) -> int:
        return len(self.stages)


def corrupt_pair(model: ImageBART, x0: torch.Tensor, t: int, generator: torch.Generator | None = None):
    """Draw (x_{t-1}, x_t) from q: x_{t-1} ~ q(. | x_0), then x_t ~ q(x_t | x_{t-1}). Each (B, N)."""
    s = model.schedule
    tt = torch.full((x0.shape[0],), t, dtype=torch.long)
    x_prev = q_sample(s, x0, tt - 1, generator)  # t - 1 = 0 returns x_0 itself
    x_t = sample_categorical(q_step_probs(s, x_prev, tt), generator)
    return x_prev, x_t


def loss(model: ImageBART, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum over stages of the mean -log p_theta(x_{t-1} | x_t) on pairs drawn from the forward chain."""
    total = x0.new_zeros((), dtype=torch.float32)
    for t in range(1, model.num_stages + 1):
        x_prev, x_t = corrupt_pair(model, x0, t, generator)
        logits = model.stages[t - 1](x_t, x_prev)  # (B, N, K)
        total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x_prev.reshape(-1))
    return total


@torch.no_grad()
def sample(model: ImageBART, batch: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """x_T ~ uniform, then each stage generates x_{t-1} token by token. Returns (x_0 (B, N), decoder calls)."""
    s = model.schedule
    n, k = model.stages[0].seq_len, s.num_classes
    x = sample_categorical(s.prior().expand(batch, n, k), generator)  # x_T
    calls = 0
    for t in range(model.num_stages, 0, -1):
        stage = model.stages[t - 1]
        memory = stage.encode(x)  # (B, N, D), once per stage
        bos = torch.full((batch, 1), stage.bos, dtype=torch.long)
        seq = ar_prior.sample(stage.decoder, bos, n, generator=generator, vocab_range=(0, k), context=memory)
        x = seq[:, 1:]  # drop BOS
        calls += n  # one cached decoder call per generated token
    return x, calls
