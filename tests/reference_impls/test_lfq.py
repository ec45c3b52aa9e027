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


def test_index_of_a_raw_vector_counts_only_its_positive_entries():
    # idx(z) = sum_i 2^i [z_i > 0]: an entry 0 is a 0 bit, as sign_codes maps 0 to -1.
    z = torch.tensor([[0.0, 2.0, 0.0, -1.0], [0.5, 0.0, 0.0, 0.0]])
    assert codes_to_indices(z).tolist() == [2, 1]
    assert torch.equal(codes_to_indices(z), codes_to_indices(sign_codes(z)))


def test_indices_and_codes_round_trip_on_any_batch_shape():
    idx = torch.randint(0, 2**5, (3, 7, 2), generator=torch.Generator().manual_seed(4))  # (B, H, W)
    codes = indices_to_codes(idx, 5)
    assert codes.shape == (3, 7, 2, 5)
    assert torch.equal(codes_to_indices(codes), idx)


def test_one_row_at_the_largest_exact_width_has_codebook_entropy_equal_to_its_own_entropy():
    # MAX_EXACT_BITS = 16 bits are still computed exactly; with one row the batch's code distribution
    # is that row's, so H(mean p) = H(p) = the per-sample entropy.
    z = torch.randn(1, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    per_sample, codebook = entropy_terms(z, temperature=4.0)
    assert codebook.item() == pytest.approx(per_sample.item(), rel=1e-9)


def test_codebook_size_is_two_to_the_bits_and_every_code_is_reached():
    lfq = LFQ(4)
    out = lfq(torch.randn(1, 4, 40, 40, generator=torch.Generator().manual_seed(6)))
    assert lfq.codebook_size == 16 == len(set(out.indices.reshape(-1).tolist()))
    assert out.indices.max().item() == lfq.codebook_size - 1


@pytest.mark.parametrize("dim", [None, 4])
def test_without_a_different_width_there_is_no_projection_and_the_output_is_the_signs(dim):
    lfq = LFQ(4, dim=dim).eval()
    assert list(lfq.parameters()) == []
    z = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(lfq(z).z_q, sign_codes(z))


def test_loss_is_the_weighted_entropy_penalty_plus_the_commitment_and_the_penalty_is_off_in_eval():
    # loss = entropy_weight * (H_sample - gamma * H_codebook) + beta * ||z - q(z)||^2, the entropies of
    # the projected rows at the module's temperature and group size; eval mode drops the entropies.
    lfq = LFQ(6, dim=12, entropy_weight=0.3, gamma=0.7, temperature=0.5, beta=0.25, group_size=3).train()
    x = torch.randn(2, 12, 3, 3, generator=torch.Generator().manual_seed(8))
    out = lfq(x)
    z = lfq.project_in(x.movedim(1, -1).reshape(-1, 12))  # (N, d)
    per_sample, codebook = entropy_terms(z, temperature=0.5, group_size=3)
    commitment = ((z - sign_codes(z)) ** 2).mean()
    assert out.per_sample_entropy.item() == pytest.approx(per_sample.item(), rel=1e-6)
    assert out.codebook_entropy.item() == pytest.approx(codebook.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx((0.3 * (per_sample - 0.7 * codebook) + 0.25 * commitment).item(), rel=1e-6)
    p = torch.bincount(out.indices.reshape(-1), minlength=64).double() / 18
    p = p[p > 0]
    assert out.perplexity.item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-5)
    lfq.eval()
    evaluated = lfq(x)
    assert evaluated.per_sample_entropy.item() == 0.0 and evaluated.codebook_entropy.item() == 0.0
    assert evaluated.loss.item() == pytest.approx(0.25 * commitment.item(), rel=1e-6)


def test_defaults_are_vector_quantize_pytorchs():
    # lookup_free_quantization.py (1.32.0): entropy_loss_weight 0.1, diversity_gamma 1, commitment_loss_weight 0,
    # inv_temperature 100 (tau = 0.01).
    lfq = LFQ(4)
    assert (lfq.entropy_weight, lfq.gamma, lfq.temperature, lfq.beta) == (0.1, 1.0, 0.01, 0.0)
