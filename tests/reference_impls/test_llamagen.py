import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.llamagen import (
    LlamaGenPrior,
    RotaryAttention,
    apply_rope,
    guided_logits,
    llamagen_loss,
    rope_2d_angles,
    rope_table,
    sample,
)

HEAD_DIM = 16


def tiny(**kw):
    torch.manual_seed(0)
    return LlamaGenPrior(vocab_size=13, n_classes=5, dim=32, n_layers=2, n_heads=2, grid=(3, 4), **kw).eval()


def score(q, k, table, i, j):
    """<rot(q, i), rot(k, j)> for raster positions i, j of the table."""
    return (apply_rope(q[None], table[i : i + 1]) * apply_rope(k[None], table[j : j + 1])).sum()


def test_2d_rope_scores_depend_only_on_the_row_and_column_offsets():
    g = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(HEAD_DIM, generator=g, dtype=torch.float64),
        torch.randn(HEAD_DIM, generator=g, dtype=torch.float64),
    )
    h = w = 8
    angles = rope_2d_angles(h, w, HEAD_DIM)
    table = torch.stack([angles.cos(), angles.sin()], dim=-1)  # float64, no prefix

    def pos(r, c):
        return r * w + c

    base = score(q, k, table, pos(1, 2), pos(3, 1))
    for dr, dc in [(1, 0), (0, 3), (2, 4), (4, 2)]:  # shift both positions together
        shifted = score(q, k, table, pos(1 + dr, 2 + dc), pos(3 + dr, 1 + dc))
        torch.testing.assert_close(shifted, base, rtol=0, atol=1e-12)
    # shifting only one of the two positions changes the score: the invariance is not trivial
    assert (score(q, k, table, pos(1, 2), pos(3, 2)) - base).abs() > 1e-3
    assert (score(q, k, table, pos(2, 2), pos(3, 1)) - base).abs() > 1e-3


def test_first_half_of_the_pairs_rotates_with_the_row_second_half_with_the_column():
    angles = rope_2d_angles(4, 5, HEAD_DIM)  # (20, 8)
    quarter = HEAD_DIM // 4
    omega = 10000.0 ** (-torch.arange(0, HEAD_DIM // 2, 2, dtype=torch.float64) / (HEAD_DIM // 2))
    r, c = 3, 2
    torch.testing.assert_close(angles[r * 5 + c, :quarter], r * omega)
    torch.testing.assert_close(angles[r * 5 + c, quarter:], c * omega)


def test_rope_is_a_rotation_it_keeps_the_norm_of_every_pair():
    x = torch.randn(2, 7, HEAD_DIM, generator=torch.Generator().manual_seed(1))
    table = rope_table(2, 3, HEAD_DIM)[:7]
    y = apply_rope(x, table)
    torch.testing.assert_close(y.reshape(2, 7, -1, 2).norm(dim=-1), x.reshape(2, 7, -1, 2).norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])  # the class token (identity prefix) is not rotated


def test_cached_queries_use_the_last_positions_of_the_table():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 6, HEAD_DIM, generator=g) for _ in range(3))
    attn = RotaryAttention(rope_table(2, 3, HEAD_DIM)[:6])
    full = attn(q, k, v, torch.ones(6, 6, dtype=torch.bool).tril())
    last = attn(q[:, :, -2:], k, v, torch.ones(6, 6, dtype=torch.bool).tril()[-2:])
    torch.testing.assert_close(last, full[:, :, -2:])


def test_official_zero_prefix_rows_silence_the_class_token_key():
    """gpt.py's prefix rows of the RoPE cache are zeros: the class token's query and key become 0."""
    g = torch.Generator().manual_seed(3)
    k = torch.randn(1, 1, 5, HEAD_DIM, generator=g)
    zero = apply_rope(k, rope_table(2, 2, HEAD_DIM, prefix="zero")[:5])
    ident = apply_rope(k, rope_table(2, 2, HEAD_DIM, prefix="identity")[:5])
    assert zero[..., 0, :].abs().max() == 0
    torch.testing.assert_close(ident[..., 0, :], k[..., 0, :])
    torch.testing.assert_close(zero[..., 1:, :], ident[..., 1:, :])


def test_prior_is_causal_changing_token_t_changes_only_the_predictions_after_it():
    model = tiny()
    g = torch.Generator().manual_seed(4)
    y = torch.randint(0, 13, (2, 11), generator=g)
    c = torch.tensor([1, 3])
    y2 = y.clone()
    y2[:, 5] = (y2[:, 5] + 4) % 13
    a, b = model(y, c), model(y2, c)  # logits[:, i] predicts y_i from c and y_<i
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4


def test_the_class_reaches_every_prediction():
    model = tiny()
    y = torch.randint(0, 13, (1, 11), generator=torch.Generator().manual_seed(5))
    a, b = model(y, torch.tensor([0])), model(y, torch.tensor([4]))
    assert (a - b).abs().amax(dim=-1).min() > 1e-5


def test_guidance_at_scale_one_is_the_conditional_logits():
    model = tiny()
    y = torch.randint(0, 13, (3, 6), generator=torch.Generator().manual_seed(6))
    c = torch.tensor([0, 2, 4])
    cond = model(y, c)[:, -1]
    uncond = model(y, torch.full_like(c, model.null_label))[:, -1]
    torch.testing.assert_close(guided_logits(model, y, c, scale=1.0), cond, rtol=0, atol=1e-5)
    torch.testing.assert_close(guided_logits(model, y, c, scale=4.0), uncond + 4.0 * (cond - uncond), rtol=0, atol=1e-5)
    assert (guided_logits(model, y, c, scale=4.0) - cond).abs().max() > 1e-4


def test_loss_without_dropout_is_the_mean_next_token_nll():
    model = tiny()
    y = torch.randint(0, 13, (2, 12), generator=torch.Generator().manual_seed(7))
    c = torch.tensor([1, 2])
    logp = model(y[:, :-1], c).log_softmax(-1)  # (2, 12, V)
    nll = -logp.gather(-1, y[..., None]).mean()
    torch.testing.assert_close(llamagen_loss(model, y, c, p_uncond=0.0), nll)
    # with p_uncond = 1 every class is the null class
    null_logits = model(y[:, :-1], torch.full_like(c, model.null_label))
    expected = F.cross_entropy(null_logits.reshape(-1, 13), y.reshape(-1))
    torch.testing.assert_close(llamagen_loss(model, y, c, p_uncond=1.0), expected)


def test_greedy_guided_sample_takes_the_argmax_of_the_guided_logits_at_every_step():
    model = tiny()
    c = torch.tensor([2, 3])
    out = sample(model, c, scale=2.5, top_k=1, generator=torch.Generator().manual_seed(8))
    assert out.shape == (2, 12)
    for i in range(12):
        torch.testing.assert_close(out[:, i], guided_logits(model, out[:, :i], c, scale=2.5).argmax(-1))


def test_sequence_longer_than_the_grid_is_refused():
    model = tiny()
    with pytest.raises(ValueError, match="exceed the grid"):
        model(torch.zeros(1, 13, dtype=torch.long), torch.tensor([0]))


def test_head_dim_not_divisible_by_four_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_2d_angles(2, 2, 6)
    assert math.isclose(float(rope_2d_angles(2, 2, 8)[3, 0]), 1.0)  # row 1, first pair: omega_0 = 1


def test_the_table_and_the_prior_use_the_given_rope_base_and_prefix():
    # rope_table's rows after the prefix are (cos, sin) of rope_2d_angles at the same base; the prior's
    # buffer is that table with one prefix row for the class token.
    angles = rope_2d_angles(3, 4, HEAD_DIM, base=100.0)
    table = rope_table(3, 4, HEAD_DIM, base=100.0)
    torch.testing.assert_close(table[1:], torch.stack([angles.cos(), angles.sin()], dim=-1).float())
    model = tiny(rope_base=100.0)
    torch.testing.assert_close(model.rope, table)
    assert tiny(prefix_rotation="zero").rope[0].abs().max() == 0
    assert torch.equal(tiny().rope[0], torch.stack([torch.ones(HEAD_DIM // 2), torch.zeros(HEAD_DIM // 2)], -1))


def test_an_unknown_prefix_rotation_is_refused():
    with pytest.raises(ValueError, match="prefix must be 'identity' or 'zero', got 'none'"):
        rope_table(2, 2, HEAD_DIM, prefix="none")


def test_the_rope_table_is_configuration_not_saved_state():
    # The table follows from grid, head size and base: a checkpoint holds only learned weights.
    model = tiny()
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}


def test_the_generator_alone_decides_which_classes_are_dropped():
    model = tiny()
    y = torch.randint(0, 13, (16, 12), generator=torch.Generator().manual_seed(9))
    c = torch.arange(16) % 5
    torch.manual_seed(0)
    a = llamagen_loss(model, y, c, p_uncond=0.5, generator=torch.Generator().manual_seed(10))
    torch.manual_seed(1)
    b = llamagen_loss(model, y, c, p_uncond=0.5, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_calls_without_the_options_equal_the_released_values():
    # gpt.py ModelArgs: rope_base 10000, class_dropout_prob 0.1 (the note's key numbers); the calls without
    # the option equal the calls with the released value.
    assert torch.equal(rope_table(3, 4, HEAD_DIM), rope_table(3, 4, HEAD_DIM, base=10000.0))
    assert torch.equal(rope_2d_angles(3, 4, HEAD_DIM), rope_2d_angles(3, 4, HEAD_DIM, base=10000.0))
    assert torch.equal(tiny().rope, rope_table(3, 4, HEAD_DIM, base=10000.0))
    model = tiny()
    y = torch.randint(0, 13, (64, 12), generator=torch.Generator().manual_seed(11))
    c = torch.arange(64) % 5
    default = llamagen_loss(model, y, c, generator=torch.Generator().manual_seed(12))
    released = llamagen_loss(model, y, c, p_uncond=0.1, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(default, released, rtol=0, atol=0)
    assert not torch.equal(default, llamagen_loss(model, y, c, p_uncond=0.0))  # some of the 64 classes dropped


def test_rope_angles_are_the_closed_form_in_float64():
    # angle of pair j < d_h/4 at (r, c): r * base^(-2j / (d_h/2)); pair d_h/4 + j: c * the same frequency.
    angles = rope_2d_angles(3, 4, HEAD_DIM, base=100.0)
    half = HEAD_DIM // 2
    for r in range(3):
        for c in range(4):
            for j in range(HEAD_DIM // 4):
                omega = 100.0 ** (-(2 * j) / half)
                assert angles[r * 4 + c, j].item() == pytest.approx(r * omega, rel=0, abs=1e-14)
                assert angles[r * 4 + c, HEAD_DIM // 4 + j].item() == pytest.approx(c * omega, rel=0, abs=1e-14)


def test_in_one_layer_the_order_of_earlier_tokens_matters_only_through_rope():
    # One causal attention layer without positions sees its prefix as a set: the last position's output
    # would not change when two earlier tokens swap. With 2-D RoPE it does.
    torch.manual_seed(0)
    model = LlamaGenPrior(vocab_size=13, n_classes=5, dim=32, n_layers=1, n_heads=2, grid=(3, 4)).eval()
    y = torch.randint(0, 13, (1, 6), generator=torch.Generator().manual_seed(13))
    y[0, 0], y[0, 1] = 2, 7
    swapped = y.clone()
    swapped[0, 0], swapped[0, 1] = 7, 2
    c = torch.tensor([1])
    assert (model(y, c)[:, -1] - model(swapped, c)[:, -1]).abs().max() > 1e-4


def test_the_whole_grid_is_accepted_and_one_token_more_refused_with_the_grid_size():
    model = tiny()  # grid 3 x 4
    assert model(torch.zeros(1, 12, dtype=torch.long), torch.tensor([0])).shape == (1, 13, 13)
    with pytest.raises(ValueError, match=r"^13 tokens exceed the grid of 12$"):
        model(torch.zeros(1, 13, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^2-D RoPE needs head_dim divisible by 4 \(two axes, pairs of channels\)$"):
        rope_2d_angles(2, 2, 6)


def test_the_head_has_no_bias_as_in_the_release():
    # gpt.py: self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
    assert tiny().head.bias is None
