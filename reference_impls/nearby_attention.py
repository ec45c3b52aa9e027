"""NUWA's 3D Nearby Attention (3DNA): attention restricted to a local (T, H, W) neighbourhood.

Papers and notes:
    - NUWA, Wu et al. 2022 (papers/wu2022nuwa.md): 3DNA, used for self-attention over a video's
      token grid (causal in the decoder) and for attention from the decoder's grid to a
      condition's grid of another size.
    - The attention itself is reference_impls/attention.py (papers/vaswani2017attention.md);
      this module only builds the mask and reshapes the grids.

Equation implemented (3DNA neighbourhood; the coordinate mapping between grids of different
sizes is this module's choice of the floor of the scaled position): a query at (t, i, j) on a
(T_q, H_q, W_q) grid is mapped onto the (T_k, H_k, W_k) key grid as
(t', i', j') = (floor(t T_k / T_q), floor(i H_k / H_q), floor(j W_k / W_q)), and may attend exactly the keys
(a, b, c) with
    |a - t'| <= e_t,   |b - i'| <= e_h,   |c - j'| <= e_w
For causal self-attention (the decoder) the key must also not come after the query in the
(t, i, j) raster order. Attention is then softmax over those keys only.

Notation (code -> paper):
    extents = (e_t, e_h, e_w)   the nearby extents along time, height and width
    q_shape, k_shape            the (T, H, W) grids of the queries (y) and of the keys (x or C)

The extents here are half-widths: e = 1 admits the 3 x 3 x 3 block around a position.
A dense boolean mask costs O(N^2) memory; the paper's sparse kernel is left out because
equality with the restricted dense attention is what a reference must pin down.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls.attention import MultiHeadAttention


def grid_coords(shape: tuple[int, int, int]) -> torch.Tensor:
    """(T*H*W, 3) integer (t, i, j) coordinates in raster order."""
    t, h, w = shape
    return torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(
        -1, 3
    )


def nearby_mask(
    q_shape: tuple[int, int, int],
    extents: tuple[int, int, int],
    k_shape: tuple[int, int, int] | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """(N_q, N_k) bool, True where the key lies in the query's 3D neighbourhood (and, if causal, not after it)."""
    k_shape = k_shape or q_shape
    if causal and k_shape != q_shape:
        raise ValueError("a causal mask needs the same grid for queries and keys")
    q = grid_coords(q_shape)  # (N_q, 3)
    k = grid_coords(k_shape)  # (N_k, 3)
    scale = torch.tensor(k_shape) / torch.tensor(q_shape)
    q_on_k = torch.floor(q * scale).long()  # (N_q, 3): the query's position on the key grid
    diff = (q_on_k[:, None, :] - k[None, :, :]).abs()  # (N_q, N_k, 3)
    mask = (diff <= torch.tensor(extents)).all(dim=-1)
    if causal:
        n = q.shape[0]
        mask &= torch.ones(n, n, dtype=torch.bool).tril()
    return mask


class NearbyAttention(nn.Module):
    """Multi-head attention over a video token grid with the 3DNA mask.

    forward(x (B, T, H, W, D), context (B, T', H', W', D) or None) -> (B, T, H, W, D).
    Self-attention when context is None (causal if causal=True); otherwise nearby cross-attention.
    """

    def __init__(self, dim: int, n_heads: int, extents: tuple[int, int, int], causal: bool = False):
        super().__init__()
        self.extents, self.causal = extents, causal
        self.attn = MultiHeadAttention(dim, n_heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, t, h, w, d = x.shape
        if context is None:
            mask = nearby_mask((t, h, w), self.extents, causal=self.causal)
            out = self.attn(x.reshape(b, t * h * w, d), mask=mask)
        else:
            k_shape = tuple(context.shape[1:4])
            mask = nearby_mask((t, h, w), self.extents, k_shape=k_shape)
            out = self.attn(x.reshape(b, t * h * w, d), context=context.reshape(b, -1, d), mask=mask)
        return out.reshape(b, t, h, w, d)
