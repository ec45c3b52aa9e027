import math

import pytest
import torch
import torch.nn as nn

from reference_impls.attention import (
    KVCache,
    MultiHeadAttention,
    TransformerBlock,
    causal_mask,
    scaled_dot_product_attention,
    sinusoidal_embedding,
    sinusoidal_positions,
)


def naive_attention(q, k, v, mask):
    """One query at a time, one key at a time: the textbook formula with explicit loops."""
    nq, nk = q.shape[0], k.shape[0]
    out = torch.zeros(nq, v.shape[1], dtype=q.dtype)
    for i in range(nq):
        allowed = [j for j in range(nk) if mask is None or bool(mask[i, j])]
        scores = torch.stack([q[i] @ k[j] / math.sqrt(q.shape[1]) for j in allowed])
        weights = torch.exp(scores - scores.max())
        weights = weights / weights.sum()
        for w, j in zip(weights, allowed, strict=True):
            out[i] += w * v[j]
    return out


def test_attention_equals_naive_per_position_computation_with_and_without_causal_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for mask in (None, causal_mask(6)):
        got = scaled_dot_product_attention(q, k, v, mask)
        torch.testing.assert_close(got, naive_attention(q, k, v, mask))


def test_causal_mask_allows_exactly_the_past_and_present():
    m = causal_mask(5)
    for i in range(5):
        for j in range(5):
            assert bool(m[i, j]) == (j <= i)


def test_multi_head_attention_equals_per_head_naive_attention_then_output_projection():
    torch.manual_seed(0)
    mha = MultiHeadAttention(dim=8, n_heads=2).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    got = mha(x, mask=causal_mask(5))
    q, k, v = mha.q_proj(x)[0], mha.k_proj(x)[0], mha.v_proj(x)[0]  # (5, 8)
    heads = [naive_attention(q[:, s], k[:, s], v[:, s], causal_mask(5)) for s in (slice(0, 4), slice(4, 8))]
    expected = mha.out_proj(torch.cat(heads, dim=1))
    torch.testing.assert_close(got[0], expected)


def test_perturbing_token_t_changes_no_output_before_t():
    torch.manual_seed(0)
    mha = MultiHeadAttention(dim=16, n_heads=4)
    x = torch.randn(2, 9, 16)
    t = 5
    x2 = x.clone()
    x2[:, t] += 3.0 * torch.randn(2, 16)
    y = mha(x, mask=causal_mask(9))
    y2 = mha(x2, mask=causal_mask(9))
    torch.testing.assert_close(y[:, :t], y2[:, :t], rtol=0, atol=1e-6)
    assert (y[:, t:] - y2[:, t:]).abs().amax(dim=-1).min() > 1e-4  # position t and later do change


def test_without_mask_a_later_token_does_change_earlier_outputs():
    torch.manual_seed(0)
    mha = MultiHeadAttention(dim=16, n_heads=4)
    x = torch.randn(1, 6, 16)
    x2 = x.clone()
    x2[:, 4] += 3.0
    assert (mha(x)[:, 0] - mha(x2)[:, 0]).abs().max() > 1e-4


def test_kv_cache_step_by_step_equals_full_causal_pass():
    torch.manual_seed(0)
    mha = MultiHeadAttention(dim=16, n_heads=4)
    x = torch.randn(2, 7, 16)
    full = mha(x, mask=causal_mask(7))
    cache, steps = KVCache(), []
    for t in range(7):
        steps.append(mha(x[:, t : t + 1], cache=cache))
        assert len(cache) == t + 1  # appended in place
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-6)


def test_transformer_block_with_a_cache_equals_its_full_causal_pass_chunk_by_chunk():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, sandwich_ln=True).eval()
    x = torch.randn(2, 7, 16)
    full = block(x, mask=causal_mask(7))
    cache, parts = KVCache(), []
    for start, stop in ((0, 3), (3, 4), (4, 7)):  # a prefix, then one token, then a chunk
        parts.append(block(x[:, start:stop], mask=causal_mask(stop)[start:], cache=cache))
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-6)
    assert (cache.k.shape, cache.v.shape) == ((2, 4, 7, 4), (2, 4, 7, 4))


def test_transformer_block_options_are_keyword_only():
    with pytest.raises(TypeError):
        TransformerBlock(16, 4, True)  # a positional flag must be refused


def test_sinusoidal_formula_holds_entry_by_entry():
    n, d = 50, 16
    pe = sinusoidal_positions(n, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def test_sinusoidal_offset_is_a_linear_map_independent_of_position():
    # Sec. 3.5's motivation: PE(pos + k) is a fixed rotation of PE(pos) for every pos.
    n, d, k = 40, 8, 3
    pe = sinusoidal_positions(n + k, d).double()
    w = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    c, s = torch.cos(k * w), torch.sin(k * w)
    sin_p, cos_p = pe[:n, 0::2], pe[:n, 1::2]
    torch.testing.assert_close(pe[k:, 0::2], sin_p * c + cos_p * s, atol=1e-6, rtol=0)
    torch.testing.assert_close(pe[k:, 1::2], cos_p * c - sin_p * s, atol=1e-6, rtol=0)


def test_transformer_block_reads_context_only_for_kept_examples_and_stays_causal():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cross_attention=True).eval()
    x = torch.randn(2, 5, 16)
    ctx, other = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    keep = torch.tensor([True, False])
    a = block(x, mask=causal_mask(5), context=ctx, keep=keep)
    b = block(x, mask=causal_mask(5), context=other, keep=keep)
    assert not torch.allclose(a[0], b[0])  # the kept example reads its context
    torch.testing.assert_close(a[1], b[1])  # the dropped one does not
    y = x.clone()
    y[:, 3] += 1.0  # perturb token 3: outputs before it must not move
    c = block(y, mask=causal_mask(5), context=ctx, keep=keep)
    torch.testing.assert_close(c[:, :3], a[:, :3])
    assert not torch.allclose(c[:, 3], a[:, 3])


def test_sinusoidal_embedding_needs_an_even_dimension_and_uses_its_base():
    with pytest.raises(ValueError, match="^a sinusoidal embedding needs an even dimension d$"):
        sinusoidal_positions(4, 5)
    pe = sinusoidal_positions(6, 4, base=100.0)
    assert math.isclose(pe[5, 2].item(), math.sin(5 / 100 ** (2 / 4)), abs_tol=1e-6)
    assert math.isclose(pe[5, 3].item(), math.cos(5 / 100 ** (2 / 4)), abs_tol=1e-6)
    assert pe.dtype == torch.float32


def test_heads_must_divide_the_width_and_bias_free_attention_is_linear():
    with pytest.raises(ValueError, match="^dim must be divisible by n_heads$"):
        MultiHeadAttention(10, 4)
    torch.manual_seed(0)
    plain = MultiHeadAttention(8, 2, bias=False)
    assert all(p.bias is None for p in (plain.q_proj, plain.k_proj, plain.v_proj, plain.out_proj))
    # without biases the layer maps 0 to 0; the default, with biases, does not
    torch.testing.assert_close(plain(torch.zeros(2, 5, 8)), torch.zeros(2, 5, 8))
    default = MultiHeadAttention(8, 2)
    assert all(p.bias is not None for p in (default.q_proj, default.k_proj, default.v_proj, default.out_proj))
    assert default(torch.zeros(2, 5, 8)).abs().max() > 0
    assert len(KVCache()) == 0


def test_transformer_block_is_the_pre_ln_residual_composition_with_optional_sandwich_ln():
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 4, 16), torch.randn(2, 3, 16)
    mask = causal_mask(4)
    for sandwich in (False, True):
        blk = TransformerBlock(16, 4, cross_attention=True, sandwich_ln=sandwich).eval()
        out_a = blk.ln_attn_out if sandwich else (lambda h: h)
        out_c = blk.ln_cross_out if sandwich else (lambda h: h)
        out_f = blk.ln_ffn_out if sandwich else (lambda h: h)
        h = x + out_a(blk.attn(blk.ln_attn_in(x), mask=mask))
        h = h + out_c(blk.cross(blk.ln_cross_in(h), context=ctx))
        h = h + out_f(blk.ffn(blk.ln_ffn_in(h)))
        torch.testing.assert_close(blk(x, mask=mask, context=ctx), h)
        assert isinstance(blk.ln_ffn_out, nn.LayerNorm) == sandwich
    # without a context the cross-attention branch is skipped
    blk = TransformerBlock(16, 4, cross_attention=True).eval()
    h = x + blk.attn(blk.ln_attn_in(x))
    torch.testing.assert_close(blk(x), h + blk.ffn(blk.ln_ffn_in(h)))
    plain = TransformerBlock(16, 4)
    assert plain.cross is None and plain.ffn[0].out_features == 64  # FFN width 4 dim
    assert isinstance(plain.ffn[1], nn.GELU)


def test_custom_attention_and_layer_norm_replace_the_defaults():
    calls = []

    def attention(q, k, v, m):
        calls.append("attention")
        return scaled_dot_product_attention(q, k, v, m)

    def layer_norm(x, ln):
        calls.append("layer_norm")
        return ln(x)

    torch.manual_seed(0)
    blk = TransformerBlock(8, 2, cross_attention=True, attention=attention, layer_norm=layer_norm)
    ref = TransformerBlock(8, 2, cross_attention=True)
    ref.load_state_dict(blk.state_dict())
    x, ctx = torch.randn(1, 3, 8), torch.randn(1, 2, 8)
    torch.testing.assert_close(blk(x, context=ctx), ref(x, context=ctx))
    assert calls == ["layer_norm", "attention", "layer_norm", "attention", "layer_norm"]


def test_sinusoidal_embedding_defaults_to_base_10000_and_stays_exact_at_large_positions():
    # the angle is formed in float64, so even a position of 12,345 (a diffusion step or a long
    # sequence) comes out within float32 rounding of the exact sin/cos
    pe = sinusoidal_embedding(torch.tensor([7, 12345]), 6)  # d = 6: frequencies that are not powers of 10
    for row, pos in enumerate((7, 12345)):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert math.isclose(pe[row, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[row, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
