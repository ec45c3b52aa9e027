"""Parity with a standard rotary embedding (lucidrains/rotary-embedding-torch, the `parity` extra, 0.9.1).

Module compared: reference_impls.llamagen's 2-D RoPE (rope_2d_angles, rope_table, apply_rope,
RotaryAttention) against rotary_embedding_torch.RotaryEmbedding's axial frequencies
(get_axial_freqs) and apply_rotary_emb. Both rotate adjacent channel pairs (2p, 2p + 1), as
LlamaGen's complex-number form does; the first half of the pairs carries the row, the second the
column. Tolerance: float32, 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from reference_impls.attention import scaled_dot_product_attention
from reference_impls.llamagen import RotaryAttention, apply_rope, rope_2d_angles, rope_table

rotary = pytest.importorskip(
    "rotary_embedding_torch", reason="rotary-embedding-torch is not installed (pip install -e '.[parity]')"
)

H, W, HEAD = 6, 5, 32  # grid rows, columns, head dimension (LlamaGen-B: 768 / 12 = 64)


def peer_angles() -> torch.Tensor:
    """The peer's axial angles for an H x W grid, (H * W, HEAD): each pair's angle written twice."""
    rope = rotary.RotaryEmbedding(dim=HEAD // 2, freqs_for="lang", theta=10000)  # per axis: half the channels
    return rope.get_axial_freqs(H, W).reshape(H * W, HEAD)


def test_angles_are_the_peer_axial_frequencies_row_pairs_first():
    ours = rope_2d_angles(H, W, HEAD).float()  # (H W, HEAD / 2), one angle per pair
    theirs = peer_angles()
    torch.testing.assert_close(theirs[:, 0::2], ours, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(theirs[:, 1::2], ours, rtol=1e-6, atol=1e-6)


def test_rotated_queries_and_keys_and_attention_equal_the_peer():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, H * W, HEAD, generator=g) for _ in range(3))  # (B, h, N, d_h)
    table = rope_table(H, W, HEAD, n_prefix=0)  # (N, d_h / 2, 2), no class token
    angles = peer_angles()
    torch.testing.assert_close(apply_rope(q, table), rotary.apply_rotary_emb(angles, q), rtol=1e-5, atol=1e-5)
    theirs = scaled_dot_product_attention(rotary.apply_rotary_emb(angles, q), rotary.apply_rotary_emb(angles, k), v)
    torch.testing.assert_close(RotaryAttention(table)(q, k, v), theirs, rtol=1e-5, atol=1e-5)


def test_the_condition_prefix_is_left_unrotated_the_peer_has_no_prefix_position():
    # LlamaGen puts the class token before the grid; ours rotates it by 0 (identity), and the grid
    # rows that follow equal the peer's grid exactly (the official code zeroes the prefix instead,
    # see papers/sun2024autoregressive.md)
    x = torch.randn(1, 1, 1 + H * W, HEAD, generator=torch.Generator().manual_seed(1))
    rotated = apply_rope(x, rope_table(H, W, HEAD, n_prefix=1))
    torch.testing.assert_close(rotated[..., 0, :], x[..., 0, :], rtol=0, atol=0)
    torch.testing.assert_close(rotated[..., 1:, :], rotary.apply_rotary_emb(peer_angles(), x[..., 1:, :]))
