import math

import pytest
import torch

from reference_impls.bsq import BSQ, error_bound, quantize_sphere, spherical_sign
from reference_impls.lfq import codes_to_indices, entropy_terms


def test_codes_lie_on_the_unit_sphere_at_the_corners_of_the_cube():
    bsq = BSQ(18, 32, group_size=9)
    out = bsq(torch.randn(4, 32, 5, 5, generator=torch.Generator().manual_seed(0)))
    norms = out.codes.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    assert set((out.codes * math.sqrt(18)).round().unique().tolist()) == {-1.0, 1.0}
    assert torch.allclose(out.unit.norm(dim=-1), torch.ones_like(norms), atol=1e-6)


@pytest.mark.parametrize("bits", [2, 4, 18, 36])
def test_quantisation_error_never_exceeds_the_bound_and_reaches_it_on_an_axis(bits):
    # ||u - uhat||^2 = 2 - (2 / sqrt(L)) ||u||_1 <= 2 - 2 / sqrt(L) for unit u.
    g = torch.Generator().manual_seed(bits)
    gaussian = torch.randn(20000, bits, generator=g)
    sparse = gaussian * (torch.rand(20000, bits, generator=g) < 2 / bits)  # near the axes, the worst case
    u = torch.nn.functional.normalize(torch.cat([gaussian, sparse + 1e-9]), dim=1)
    err = (u - spherical_sign(u)).norm(dim=1)
    assert err.max() <= error_bound(bits) + 1e-6
    l1 = u.abs().sum(dim=1)
    assert torch.allclose(err.pow(2), 2 - 2 * l1 / math.sqrt(bits), atol=1e-5)
    axis = torch.zeros(1, bits)
    axis[0, 0] = 1.0
    assert (axis - spherical_sign(axis)).norm().item() == pytest.approx(error_bound(bits), abs=1e-6)
    assert error_bound(bits) < math.sqrt(2)


def test_without_the_sphere_sign_quantisation_has_no_error_bound():
    # LFQ-style sign(z) on unnormalised inputs: the error grows with ||z||.
    z = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    lfq_err = (z - torch.where(z > 0, 1.0, -1.0)).norm().item()
    assert lfq_err > 10 * error_bound(4)


def test_index_is_the_bit_pattern_of_the_signs_as_in_lfq():
    bsq = BSQ(6, 8)
    out = bsq(torch.randn(3, 8, 2, 2, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(out.indices, codes_to_indices(out.unit))
    assert torch.allclose(bsq.lookup(out.indices), out.z_q, atol=1e-6)


def test_entropy_uses_codes_of_norm_one():
    # The soft assignment compares u with codes of magnitude 1/sqrt(L): p(bit_i = 1) = sigmoid(4 u_i / (sqrt(L) tau)).
    bsq = BSQ(4, 8, temperature=0.5).train()
    out = bsq(torch.randn(1, 8, 1, 1, generator=torch.Generator().manual_seed(2)))
    u = out.unit.reshape(1, 4).double()
    p = torch.sigmoid(4 * u / (2.0 * 0.5))  # sqrt(4) = 2
    by_hand = -(p * p.log() + (1 - p) * (1 - p).log()).sum()
    assert out.per_sample_entropy.item() == pytest.approx(by_hand.item(), rel=1e-5)
    unscaled, _ = entropy_terms(u, temperature=0.5)  # what codes of magnitude 1 would give
    assert abs(unscaled.item() - by_hand.item()) > 1e-3


def test_gradient_reaches_the_input_straight_through_the_sign():
    bsq = BSQ(5, 7)
    z = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = bsq(z)
    out.z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_straight_through_jacobian_is_the_identity_not_the_code_scale():
    # The official code multiplies the straight-through output by 1/sqrt(L), which scales the
    # gradient reaching u by 1/sqrt(L); ours hands the decoder's gradient to u unchanged.
    u = torch.nn.functional.normalize(torch.randn(5, 9, generator=torch.Generator().manual_seed(4)), dim=1)
    u.requires_grad_(True)
    g = torch.randn(5, 9, generator=torch.Generator().manual_seed(5))
    out = quantize_sphere(u)
    assert torch.allclose(out, spherical_sign(u.detach()))
    (out * g).sum().backward()
    assert torch.allclose(u.grad, g)


def test_loss_is_the_weighted_entropy_penalty_plus_the_commitment_and_the_penalty_is_off_in_eval():
    # loss = entropy_weight * (H_sample - gamma * H_codebook) + beta * ||u - uhat||^2 on the unit rows u,
    # the entropies with codes of magnitude 1/sqrt(L) at the module's temperature and group size.
    bsq = BSQ(6, 12, entropy_weight=0.3, gamma=0.7, temperature=0.5, beta=0.25, group_size=3).train()
    x = torch.randn(2, 12, 3, 3, generator=torch.Generator().manual_seed(6))
    out = bsq(x)
    u = torch.nn.functional.normalize(bsq.project_in(x.movedim(1, -1).reshape(-1, 12)), dim=1)  # (N, L)
    per_sample, codebook = entropy_terms(u, temperature=0.5, code_scale=1 / math.sqrt(6), group_size=3)
    commitment = ((u - spherical_sign(u)) ** 2).mean()
    assert out.per_sample_entropy.item() == pytest.approx(per_sample.item(), rel=1e-6)
    assert out.codebook_entropy.item() == pytest.approx(codebook.item(), rel=1e-6)
    expected = 0.3 * (per_sample - 0.7 * codebook) + 0.25 * commitment
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    p = torch.bincount(out.indices.reshape(-1), minlength=64).double() / 18
    p = p[p > 0]
    assert out.perplexity.item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-5)
    bsq.eval()
    evaluated = bsq(x)
    assert evaluated.per_sample_entropy.item() == 0.0 and evaluated.codebook_entropy.item() == 0.0
    assert evaluated.loss.item() == pytest.approx(0.25 * commitment.item(), rel=1e-6)


def test_codebook_size_is_two_to_the_bits_and_every_code_is_reached():
    torch.manual_seed(0)  # the projection's initialisation
    bsq = BSQ(4, 6)
    out = bsq(3 * torch.randn(1, 6, 60, 60, generator=torch.Generator().manual_seed(7)))
    assert bsq.codebook_size == 16 == len(set(out.indices.reshape(-1).tolist()))
    assert out.indices.max().item() == bsq.codebook_size - 1


def test_defaults_are_lfqs():
    # The module docstring: temperature=0.01 and the other entropy defaults are LFQ's (reference_impls/lfq.py).
    from reference_impls.lfq import LFQ

    bsq, lfq = BSQ(4, 6), LFQ(4)
    assert (bsq.entropy_weight, bsq.gamma, bsq.temperature, bsq.beta) == (
        lfq.entropy_weight,
        lfq.gamma,
        lfq.temperature,
        lfq.beta,
    )


def test_spherical_codes_have_norm_one_on_any_batch_shape():
    # uhat = sign(u) / sqrt(L) with L the last axis, whatever the leading axes (B, S, L).
    u = torch.nn.functional.normalize(torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(8)), dim=-1)
    uhat = spherical_sign(u)
    assert torch.allclose(uhat.norm(dim=-1), torch.ones(3, 5))
    assert torch.allclose(uhat.abs(), torch.full_like(u, 1 / math.sqrt(8)))
