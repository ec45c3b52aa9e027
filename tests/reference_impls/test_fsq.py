import itertools
import math

import pytest
import torch

from reference_impls.fsq import FSQ, round_ste

LEVELS = [4, 5, 2, 3]  # even, odd, the smallest even (2) and a small odd count: 120 codes


def test_every_code_of_the_implicit_codebook_is_reached_and_round_trips():
    # Without the even-level offset, L = 4 rounds tanh(.) * 1.5 to only {-1, 0, 1} and L = 2 to {0}:
    # codes go missing. A wrong place value (basis) breaks the round trip.
    fsq = FSQ(LEVELS)
    z = 3 * torch.randn(40000, 4, generator=torch.Generator().manual_seed(0))
    zhat = fsq.quantize(z)
    idx = fsq.codes_to_indices(zhat)
    assert set(idx.tolist()) == set(range(120))
    assert torch.equal(fsq.indices_to_codes(idx), zhat)
    all_idx = torch.arange(120)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(all_idx)), all_idx)


def test_implicit_codebook_is_the_product_of_the_per_channel_level_sets():
    fsq = FSQ(LEVELS)
    per_channel = [[(k - n // 2) / (n // 2) for k in range(n)] for n in LEVELS]  # e.g. L=4: -1, -.5, 0, .5
    expected = {tuple(c) for c in itertools.product(*per_channel)}
    got = {tuple(row) for row in fsq.implicit_codebook().tolist()}
    assert got == expected and fsq.codebook_size == 120 == len(got)
    # row k of the implicit codebook has index k: channel 0 is the least significant digit
    assert fsq.implicit_codebook()[1].tolist() == [-0.5, -1.0, -1.0, -1.0]


def test_official_colab_example_quantises_and_indexes_as_computed_by_hand():
    # fsq.ipynb: FSQ(levels=[3, 5, 4]) on z = [0.25, 0.6, -7].
    # L=3: tanh(.25) * 0.999 = 0.245 -> 0; L=5: tanh(.6) * 1.998 = 1.07 -> 1 -> 0.5;
    # L=4: tanh(-7 + s) * 1.4985 - 0.5 = -1.9985 -> -2 -> -1.
    # digits (0+1, 1+2, -2+2) = (1, 3, 0), place values (1, 3, 15): index 1 + 9 + 0 = 10.
    fsq = FSQ([3, 5, 4])
    zhat = fsq.quantize(torch.tensor([0.25, 0.6, -7.0]))
    assert zhat.tolist() == [0.0, 0.5, -1.0]
    assert int(fsq.codes_to_indices(zhat)) == 10


def test_gradient_passes_straight_through_the_rounding():
    # d zhat / dz must be the derivative of the bound alone, divided by floor(L/2): rounding adds nothing.
    fsq = FSQ(LEVELS)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 4, generator=g, requires_grad=True)
    w = torch.randn(16, 4, generator=g)
    (fsq.quantize(z) * w).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (fsq.bound(z2) / (fsq.levels // 2) * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad)
    assert z.grad.abs().min() > 0  # every entry receives a gradient (plain round() would give zeros)


def test_round_ste_has_identity_jacobian():
    x = torch.tensor([0.2, 1.7, -2.5], requires_grad=True)
    y = round_ste(x)
    y.backward(torch.tensor([1.0, 2.0, 3.0]))
    assert y.tolist() == [0.0, 2.0, -2.0] and x.grad.tolist() == [1.0, 2.0, 3.0]


def test_no_codebook_or_commitment_loss_exists():
    # Without projections FSQ has nothing to learn; with them, only the two linear maps.
    bare = FSQ(LEVELS)
    assert list(bare.parameters()) == []
    projected = FSQ(LEVELS, dim=16)
    names = {n for n, _ in projected.named_parameters()}
    assert names == {"project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias"}
    out = projected(torch.randn(2, 16, 3, 3, generator=torch.Generator().manual_seed(2)))
    assert not hasattr(out, "loss")
    # The output is decided by the input alone: the same input gives the same code whatever came before.
    z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    first = bare(z).indices
    bare(torch.randn(64, 4, 3, 3))
    assert torch.equal(bare(z).indices, first)


def test_forward_and_lookup_agree_on_a_projected_feature_map():
    fsq = FSQ([8, 5, 5, 5], dim=6)
    z = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(4))
    out = fsq(z)
    assert fsq.codebook_size == 1000 and out.indices.shape == (2, 4, 4)
    assert torch.allclose(fsq.lookup(out.indices), out.z_q, atol=1e-6)


def test_a_level_count_below_two_is_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        FSQ([5, 1])


def test_bound_is_the_closed_form_in_float64():
    # f(z)_i = tanh(z_i + s_i) h_i - o_i, h = (L - 1)(1 - eps) / 2, o = 0.5 for even L, s = tan(o / h),
    # computed here per entry with Python floats; float64 input keeps float64 precision throughout.
    fsq = FSQ(LEVELS)
    z = 2 * torch.randn(64, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected = torch.empty_like(z)
    for i, n in enumerate(LEVELS):
        h = (n - 1) * (1 - 1e-3) / 2
        o = 0.5 if n % 2 == 0 else 0.0
        s = math.tan(o / h)
        expected[:, i] = torch.tensor([math.tanh(v + s) * h - o for v in z[:, i].tolist()], dtype=torch.float64)
    got = fsq.bound(z)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_quantised_values_keep_the_input_dtype(dtype):
    # A bf16 (mixed-precision) or float64 encoder output stays in its dtype: no float32 constant promotes it.
    fsq = FSQ(LEVELS)
    z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(6)).to(dtype)
    assert fsq.bound(z.movedim(1, -1)).dtype == dtype
    assert fsq.quantize(z.movedim(1, -1)).dtype == dtype
    assert fsq(z).z_q.dtype == dtype


def test_levels_are_configuration_not_saved_state():
    # levels and basis follow from the constructor's arguments: a checkpoint holds only the learned projections.
    assert FSQ(LEVELS).state_dict() == {}
    projected = FSQ(LEVELS, dim=16)
    assert set(projected.state_dict()) == {n for n, _ in projected.named_parameters()}


def test_indices_to_codes_inverts_codes_to_indices_on_any_batch_shape():
    fsq = FSQ(LEVELS)
    idx = torch.randint(0, 120, (3, 40), generator=torch.Generator().manual_seed(7))  # (B, S)
    codes = fsq.indices_to_codes(idx)
    assert codes.shape == (3, 40, 4)
    assert torch.equal(fsq.codes_to_indices(codes), idx)


def test_forward_returns_the_quantised_rows_and_the_perplexity_of_the_indices():
    # codes (B, *S, d) are quantize() of the channel-last rows; perplexity = exp(-sum_k p_k log p_k)
    # of the batch's index histogram.
    fsq = FSQ(LEVELS)
    z = 2 * torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(8))
    out = fsq(z)
    assert out.codes.shape == (2, 3, 5, 4)
    assert torch.equal(out.codes, fsq.quantize(z.movedim(1, -1)))
    assert torch.equal(out.indices, fsq.codes_to_indices(out.codes))
    p = torch.bincount(out.indices.reshape(-1), minlength=120).double() / out.indices.numel()
    p = p[p > 0]
    assert math.isclose(float(out.perplexity), math.exp(-(p * p.log()).sum().item()), rel_tol=1e-5)
