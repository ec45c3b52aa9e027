import math

import torch

from reference_impls.attention import MultiHeadAttention, scaled_dot_product_attention
from reference_impls.nearby_attention import NearbyAttention, grid_coords, nearby_mask


def test_mask_admits_exactly_the_neighbourhood_within_the_extents():
    shape, ext = (3, 4, 5), (1, 2, 1)
    m = nearby_mask(shape, ext)
    coords = grid_coords(shape).tolist()
    for p, (t, i, j) in enumerate(coords):
        for q, (a, b, c) in enumerate(coords):
            inside = abs(t - a) <= 1 and abs(i - b) <= 2 and abs(j - c) <= 1
            assert bool(m[p, q]) == inside


def test_causal_mask_also_drops_every_key_after_the_query_in_raster_order():
    shape, ext = (2, 3, 3), (1, 1, 1)
    m = nearby_mask(shape, ext, causal=True)
    coords = grid_coords(shape).tolist()
    for p, (t, i, j) in enumerate(coords):
        for q, (a, b, c) in enumerate(coords):
            expected = q <= p and abs(t - a) <= 1 and abs(i - b) <= 1 and abs(j - c) <= 1
            assert bool(m[p, q]) == expected


def test_cross_grid_mask_maps_the_query_onto_the_key_grid():
    # queries on a (1, 4, 4) grid, keys on a (1, 2, 2) grid: query (0, i, j) sits at (0, i // 2, j // 2)
    m = nearby_mask((1, 4, 4), (0, 0, 0), k_shape=(1, 2, 2))
    for i in range(4):
        for j in range(4):
            row = m[i * 4 + j]
            assert row.sum() == 1 and row[(i // 2) * 2 + j // 2]


def test_masked_attention_equals_dense_attention_restricted_to_the_neighbours():
    g = torch.Generator().manual_seed(0)
    shape, ext = (2, 3, 4), (1, 1, 2)
    n, d = 24, 8
    q, k, v = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3))
    m = nearby_mask(shape, ext, causal=True)
    out = scaled_dot_product_attention(q, k, v, m)
    for p in range(n):
        keys = m[p].nonzero().flatten()
        w = (q[p] @ k[keys].T / math.sqrt(d)).softmax(-1)  # dense attention over the neighbours only
        torch.testing.assert_close(out[p], w @ v[keys])


def test_nearby_attention_module_ignores_tokens_outside_the_neighbourhood():
    torch.manual_seed(0)
    layer = NearbyAttention(dim=8, n_heads=2, extents=(0, 1, 1), causal=True)
    x = torch.randn(1, 2, 4, 4, 8)
    x2 = x.clone()
    x2[0, 1, 3, 3] += 5.0  # the last token: outside every earlier neighbourhood (causal)
    x2[0, 0, 3, 3] += 5.0  # far from (1, 0, 0) in time-extent 0, and from (0, 0, 0) in space
    y, y2 = layer(x), layer(x2)
    torch.testing.assert_close(y[0, 0, 0, 0], y2[0, 0, 0, 0])
    torch.testing.assert_close(y[0, 1, 0, 0], y2[0, 1, 0, 0])
    assert (y[0, 1, 3, 3] - y2[0, 1, 3, 3]).abs().max() > 1e-4


def test_nearby_attention_module_equals_multi_head_attention_with_the_mask():
    torch.manual_seed(0)
    layer = NearbyAttention(dim=8, n_heads=2, extents=(1, 1, 1))
    ctx = torch.randn(2, 1, 2, 2, 8)
    x = torch.randn(2, 2, 4, 4, 8)
    mask = nearby_mask((2, 4, 4), (1, 1, 1), k_shape=(1, 2, 2))
    expected = MultiHeadAttention.forward(layer.attn, x.reshape(2, 32, 8), context=ctx.reshape(2, 4, 8), mask=mask)
    torch.testing.assert_close(layer(x, ctx), expected.reshape(2, 2, 4, 4, 8))
