import math

import pytest
import torch

from reference_impls.lfq import (
    LFQ,
    codes_to_indices,
    entropy_terms,
    indices_to_codes,
    sign_codes,
)


def _binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_index_equals_the_binary_number_of_the_signs():
    # z = (0.3, -1, 2, 0): signs (+, -, +, -) -> bits b0..b3 = 1, 0, 1, 0 -> 1 + 4 = 5
    z = torch.tensor([[0.3, -1.0, 2.0, 0.0]])
    assert sign_codes(z).tolist() == [[1.0, -1.0, 1.0, -1.0]]
    assert codes_to_indices(sign_codes(z)).tolist() == [5]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 10, generator=g)
    idx = codes_to_indices(sign_codes(z))
    by_string = [int("".join("1" if v > 0 else "0" for v in reversed(row)), 2) for row in z.tolist()]
    assert idx.tolist() == by_string


def test_zero_maps_to_minus_one_so_every_code_is_in_the_codebook():
    # torch.sign(0) = 0 would leave the codebook {-1, 1}^d
    codes = sign_codes(torch.zeros(3, 4))
    assert torch.equal(codes, -torch.ones(3, 4)) and codes_to_indices(codes).tolist() == [0, 0, 0]


def test_indices_and_codes_round_trip_over_the_whole_codebook():
    idx = torch.arange(2**8)
    codes = indices_to_codes(idx, 8)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(codes_to_indices(codes), idx)
    assert len({tuple(r) for r in codes.tolist()}) == 256


def test_entropy_terms_equal_their_closed_form_on_a_hand_example():
    # tau = 4, so p(bit_i = 1 | z) = sigmoid(4 z_i / tau) = sigmoid(z_i).
    # z1 = (ln 3, 0): p = (3/4, 1/2); z2 = (-ln 3, 0): p = (1/4, 1/2).
    # Each per-sample entropy is H_b(3/4) + ln 2. Codes k = b0 + 2 b1 have probabilities
    # (1/8, 3/8, 1/8, 3/8) under z1 and (3/8, 1/8, 3/8, 1/8) under z2: their mean is uniform, entropy ln 4.
    z = torch.tensor([[math.log(3), 0.0], [-math.log(3), 0.0]], dtype=torch.float64)
    per_sample, codebook = entropy_terms(z, temperature=4.0)
    assert per_sample.item() == pytest.approx(_binary_entropy(0.75) + math.log(2), rel=1e-12)
    assert codebook.item() == pytest.approx(math.log(4), rel=1e-12)


def test_entropy_terms_match_a_brute_force_softmax_over_all_codes():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64)
    tau, s = 0.7, 0.5
    codes = s * indices_to_codes(torch.arange(32), 5).double()  # (32, 5)
    p = torch.softmax(-((z[:, None, :] - codes[None]) ** 2).sum(-1) / tau, dim=1)  # (7, 32)

    def h(q):
        return -(q * q.log()).sum(-1)

    per_sample, codebook = entropy_terms(z, temperature=tau, code_scale=s)
    assert per_sample.item() == pytest.approx(h(p).mean().item(), rel=1e-10)
    assert codebook.item() == pytest.approx(h(p.mean(0)).item(), rel=1e-10)


def test_penalty_is_lowest_for_confident_codes_spread_over_the_codebook():
    # confident and spread: 0 - ln 4; confident but collapsed: 0 - 0; unsure (z = 0): ln 4 - ln 4.
    def penalty(z):
        per_sample, codebook = entropy_terms(torch.tensor(z, dtype=torch.float64), temperature=0.01)
        return (per_sample - codebook).item()

    spread = penalty([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    collapsed = penalty([[1.0, 1.0]] * 4)
    unsure = penalty([[0.0, 0.0]] * 4)
    assert spread == pytest.approx(-math.log(4), abs=1e-9)
    assert collapsed == pytest.approx(0.0, abs=1e-9) and unsure == pytest.approx(0.0, abs=1e-9)


def test_forward_is_straight_through_and_the_entropy_term_reaches_the_encoder():
    lfq = LFQ(6, dim=12, temperature=1.0).train()
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 12, 3, 3, generator=g, requires_grad=True)
    out = lfq(z)
    assert torch.allclose(out.z_q, lfq.lookup(out.indices), atol=1e-6)
    w = torch.randn(2, 12, 3, 3, generator=g)
    (out.z_q * w).sum().backward(retain_graph=True)
    # straight-through: the gradient is that of the linear maps with the sign taken as identity
    z2 = z.detach().clone().requires_grad_(True)
    rows = z2.movedim(1, -1).reshape(-1, 12)
    (lfq.project_out(lfq.project_in(rows)).reshape(2, 3, 3, 12).movedim(-1, 1) * w).sum().backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6)
    z.grad = None
    out.loss.backward()
    assert z.grad.abs().sum() > 0


def test_too_many_bits_for_the_exact_codebook_entropy_is_rejected():
    with pytest.raises(ValueError, match="at most 16 bits"):
        entropy_terms(torch.zeros(2, 17), temperature=1.0)


def test_grouped_codebook_entropy_sums_the_groups_and_never_falls_below_the_exact_value():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(64, 6, generator=g, dtype=torch.float64)
    z[:, 3:] = z[:, :3]  # the two groups are fully dependent: the grouped value double counts
    _, exact = entropy_terms(z, temperature=0.5)
    _, grouped = entropy_terms(z, temperature=0.5, group_size=3)
    _, first = entropy_terms(z[:, :3], temperature=0.5)
    _, second = entropy_terms(z[:, 3:], temperature=0.5)
    assert grouped.item() == pytest.approx((first + second).item(), rel=1e-12)
    assert grouped.item() > exact.item() + 0.1
    with pytest.raises(ValueError, match="does not divide"):
        entropy_terms(z, temperature=0.5, group_size=4)
