"""Finite scalar quantisation (FSQ): bounded per-channel rounding, an implicit codebook, no codebook loss.

Paper and note:
    - FSQ, Mentzer et al. 2024, "Finite Scalar Quantization: VQ-VAE Made Simple"
      (papers/mentzer2024finite.md); official code: the JAX Colab google-research/google-research
      fsq/fsq.ipynb, whose `bound`, `quantize`, `codes_to_indexes` and `indexes_to_codes` this
      module follows.

Equations implemented (d channels, channel i has L_i levels):
    bound       f(z)_i = tanh(z_i + s_i) * h_i - o_i
                h_i = (L_i - 1)(1 - eps) / 2,   o_i = 0.5 if L_i is even else 0,   s_i = tan(o_i / h_i)
    quantise    zhat_i = round_ste(f(z)_i) / floor(L_i / 2)            (values in [-1, 1])
                round_ste(x) = x + sg[round(x) - x]                    (straight-through rounding)
    codebook    C = prod_i {(k - floor(L_i/2)) / floor(L_i/2) : k = 0 .. L_i - 1},   |C| = prod_i L_i
    index       idx = sum_i k_i * b_i,   k_i = zhat_i * floor(L_i/2) + floor(L_i/2),
                b_i = prod_{j < i} L_j                                 (channel 0 is the least significant digit)
There is no codebook, no codebook loss and no commitment loss: no loss term belongs to the quantiser,
and its only parameters are the optional projections D -> d and d -> D around it. The tokenizer it
is plugged into keeps its own objective (in the paper's MaskGIT experiments, the VQGAN's perceptual
and adversarial terms beside the reconstruction).

Even L: tanh(.) * h alone takes values in (-h, h) and rounds to only L - 1 integers; the offset
o = 0.5 moves the range to (-h - 0.5, h - 0.5), which rounds to the L integers -L/2 .. L/2 - 1, and
the shift s puts the input 0 near the output 0. The official code computes s with tan where the
inverse of tanh (atanh) is meant; for L >= 4 the two shifts differ by less than 1e-3, which changes
the rounding only in thin bands at the rounding boundaries, and for L = 2 only tan is defined
(o / h > 1). The module follows the official code.

Index order: grid neighbours differ in one channel, but consecutive indices can differ in several
(levels [8, 5, 5, 5]: index 7 is the levels (7, 0, 0, 0), index 8 is (0, 1, 0, 0)).

Notation (code -> paper):
    levels     L (one per channel)       eps     epsilon of the official bound (1e-3)
    basis      b (mixed-radix place values)  half_width  floor(L/2)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reference_impls.vq import from_rows, perplexity, to_rows


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer; the backward pass treats the rounding as the identity."""
    return x + (torch.round(x) - x).detach()


@dataclass
class FSQOutput:
    z_q: torch.Tensor  # (B, D, *S) quantised map (projected back when the module has projections)
    indices: torch.Tensor  # (B, *S) int64 index into the implicit codebook
    codes: torch.Tensor  # (B, *S, d) the quantised values in [-1, 1] before the output projection
    perplexity: torch.Tensor


class FSQ(nn.Module):
    """Finite scalar quantiser with levels L = (L_1, .., L_d) on channel-first maps (B, D, *S).

    dim=None: the input already has d = len(levels) channels and the module has no parameters.
    dim=D:    D -> d and d -> D linear projections around the quantiser (the paper projects the
              encoder output down to the few FSQ channels).
    """

    def __init__(self, levels: list[int], *, dim: int | None = None, eps: float = 1e-3):
        super().__init__()
        if any(n < 2 for n in levels):
            raise ValueError(f"every level count must be at least 2, got {levels}")
        lv = torch.tensor(levels, dtype=torch.long)
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)
        self.eps = eps
        self.num_channels = len(levels)
        self.codebook_size = int(torch.prod(lv))
        d = self.num_channels
        self.project_in = nn.Linear(dim, d) if dim and dim != d else nn.Identity()
        self.project_out = nn.Linear(d, dim) if dim and dim != d else nn.Identity()

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """f(z): (..., d) -> (..., d), channel i in (-h_i - o_i, h_i - o_i)."""
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 - self.eps) / 2  # h
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)  # o
        shift = torch.tan(offset / half_l)  # s (official code: tan)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """zhat = round_ste(f(z)) / floor(L/2): (..., d) -> (..., d) on the grid in [-1, 1]."""
        return round_ste(self.bound(z)) / (self.levels // 2).to(z.dtype)

    def codes_to_indices(self, zhat: torch.Tensor) -> torch.Tensor:
        """(..., d) grid values -> (...,) int64 index (mixed radix, channel 0 least significant)."""
        half_width = (self.levels // 2).to(zhat.dtype)
        digits = torch.round(zhat * half_width + half_width).long()  # k_i in 0 .. L_i - 1
        return (digits * self.basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(...,) int64 -> (..., d) grid values; the inverse of codes_to_indices."""
        digits = (indices.unsqueeze(-1) // self.basis) % self.levels  # (..., d)
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()

    def implicit_codebook(self) -> torch.Tensor:
        """All prod(L) codes, row k being the code of index k: (prod L, d)."""
        return self.indices_to_codes(torch.arange(self.codebook_size, device=self.levels.device))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> the map the decoder receives (B, D, *S)."""
        rows = self.project_out(self.indices_to_codes(indices.reshape(-1)))
        return from_rows(rows, tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> FSQOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        zhat = self.quantize(self.project_in(rows))  # (N, d)
        indices = self.codes_to_indices(zhat.detach())  # (N,)
        out = from_rows(self.project_out(zhat), grid)  # (B, D, *S)
        return FSQOutput(out, indices.reshape(grid), zhat.reshape(*grid, -1), perplexity(indices, self.codebook_size))
