"""Parity with lucidrains/vector-quantize-pytorch (the `parity` / `bench` extra, version 1.32.0).

Modules compared: reference_impls.vq (gradient and EMA codebooks), reference_impls.rotation_trick,
reference_impls.residual_vq, reference_impls.fsq, reference_impls.lfq and reference_impls.bsq
(vector-quantize-pytorch's LFQ with spherical=True). The peer is given our parameters (codebooks,
EMA buffers, projections), both run in training mode on the same seeded input, and the test
compares the indices, the quantised values, the losses and the gradients.

Where the two differ on purpose the test asserts both values; the comment says which side our
module follows and why. Tolerances: float32 values and gradients to 1e-6 (1e-5 through the
rotation and the residual levels); the LFQ / BSQ entropies to 1e-5 with the peer's clamp of log p
at 1e-5 lifted (ours are exact; with the clamp the peer's per-sample entropy is lower by under 1e-4
relative, which the test asserts).
"""

from __future__ import annotations

import math

import pytest
import torch

from reference_impls.bsq import BSQ
from reference_impls.fsq import FSQ
from reference_impls.lfq import LFQ
from reference_impls.residual_vq import ResidualVQ
from reference_impls.rotation_trick import RotationTrickVQ
from reference_impls.vq import VectorQuantizer

vqp = pytest.importorskip(
    "vector_quantize_pytorch", reason="vector-quantize-pytorch is not installed (pip install -e '.[parity]')"
)

K, D = 256, 32  # codes, channels
SHAPE = (4, D, 8, 8)  # (B, D, H, W): 256 positions


def seeded(seed: int, shape=SHAPE, scale: float = 1.0) -> torch.Tensor:
    return (scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))).requires_grad_()


def peer_vq(**kwargs):
    """vector_quantize_pytorch.VectorQuantize on channel-first maps, no k-means, no dead-code restarts."""
    kwargs = dict(dim=D, codebook_size=K, kmeans_init=False, threshold_ema_dead_code=0, accept_image_fmap=True) | kwargs
    return vqp.VectorQuantize(**kwargs).train()


def test_vq_gradient_codebook_same_indices_values_and_encoder_gradient_codebook_term_weighted_by_beta():
    ours = VectorQuantizer(K, D, beta=0.25, generator=torch.Generator().manual_seed(1)).train()
    theirs = peer_vq(commitment_weight=0.25, rotation_trick=False, learnable_codebook=True, ema_update=False)
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.codebook[None])  # (1, K, D)
    z, g = seeded(2), torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    z_peer = z.detach().clone().requires_grad_()

    out = ours(z)
    q, idx, loss = theirs(z_peer)
    assert torch.equal(out.indices, idx)
    torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-6)

    # The peer's loss is commitment_weight * ||z - e||^2 with the code NOT stopped, so one term moves
    # both the encoder (weight beta) and the codes (weight beta). VQ-VAE Eq. 3, which ours follows,
    # weights the codebook term ||sg[z] - e||^2 by 1: the same value, beta times larger on the codes.
    torch.testing.assert_close(loss, 0.25 * out.commitment_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(out.loss, 1.25 * out.commitment_loss, rtol=1e-6, atol=0)
    torch.autograd.backward((out.z_q, out.loss), (g, None))
    torch.autograd.backward((q, loss), (g, None))
    torch.testing.assert_close(z.grad, z_peer.grad, rtol=0, atol=1e-6)  # straight-through + beta * commitment
    torch.testing.assert_close(ours.codebook.grad, theirs._codebook.embed.grad[0] / 0.25, rtol=1e-5, atol=1e-7)


def test_vq_ema_three_steps_same_codes_values_commitment_and_codebook_from_before_the_update():
    ours = VectorQuantizer(K, D, beta=0.25, ema=True, decay=0.99, eps=1e-5, generator=torch.Generator().manual_seed(1))
    ours.train()
    theirs = peer_vq(commitment_weight=0.25, rotation_trick=False, decay=0.99, eps=1e-5)
    with torch.no_grad():  # the same starting state: codes, counts (ones in both) and sums
        theirs._codebook.embed.copy_(ours.codebook[None])
        theirs._codebook.embed_avg.copy_(ours.embed_sum[None])
        theirs._codebook.cluster_size.copy_(ours.cluster_size[None])
    for step in range(3):
        z = seeded(10 + step, scale=1.0 + step)
        z_peer = z.detach().clone().requires_grad_()
        before = ours.codebook.clone()
        out = ours(z)
        q, idx, loss = theirs(z_peer)
        assert torch.equal(out.indices, idx)
        # both return the code from before this step's update (Sonnet, Jukebox, the peer, ours)
        torch.testing.assert_close(out.z_q, before.t()[:, out.indices].permute(1, 0, 2, 3), rtol=0, atol=1e-6)
        torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.loss, loss, rtol=1e-6, atol=0)  # beta * ||z - sg[e]||^2 in both
        out.loss.backward()
        loss.backward()
        torch.testing.assert_close(z.grad, z_peer.grad, rtol=1e-6, atol=1e-9)
        # the same EMA update: N_k, m_k and the Laplace-smoothed e_k = m_k / N_k'
        torch.testing.assert_close(ours.cluster_size, theirs._codebook.cluster_size[0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ours.embed_sum, theirs._codebook.embed_avg[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.codebook, theirs._codebook.embed[0], rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours.codebook, before)  # the codebook did move


def test_rotation_trick_same_forward_and_same_rotated_gradient_to_the_encoder():
    ours = RotationTrickVQ(K, D, beta=0.25, generator=torch.Generator().manual_seed(1)).train()
    theirs = peer_vq(commitment_weight=0.25, rotation_trick=True, learnable_codebook=True, ema_update=False)
    with torch.no_grad():
        theirs._codebook.embed.copy_(ours.codebook[None])
    z, g = seeded(4, scale=2.0), torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    z_peer = z.detach().clone().requires_grad_()
    out = ours(z)
    q, idx, _ = theirs(z_peer)
    assert torch.equal(out.indices, idx)
    torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-5)  # lambda R e = q up to rounding
    out.z_q.backward(g)
    q.backward(g)
    torch.testing.assert_close(z.grad, z_peer.grad, rtol=1e-5, atol=1e-6)  # lambda R^T g, both
    st = g  # straight-through would hand the encoder g itself: the rotation really changed it
    assert (z.grad - st).abs().max() > 0.1


def test_residual_vq_same_codes_and_losses_but_the_peer_hands_the_encoder_n_q_times_the_gradient():
    n_q = 4
    ours = ResidualVQ(K, D, depth=n_q, shared_codebook=False, beta=0.25, generator=torch.Generator().manual_seed(1))
    ours.train()
    theirs = vqp.ResidualVQ(
        dim=D,
        num_quantizers=n_q,
        codebook_size=K,
        commitment_weight=0.25,
        rotation_trick=False,
        kmeans_init=False,
        threshold_ema_dead_code=0,
        learnable_codebook=True,
        ema_update=False,
    ).train()
    with torch.no_grad():
        for d, layer in enumerate(theirs.layers):
            layer._codebook.embed.copy_(ours.codebook[d][None])
    z, g = seeded(6), torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    z_peer = z.detach().clone().requires_grad_()
    rows = lambda x: x.movedim(1, -1).reshape(SHAPE[0], -1, D)  # noqa: E731  (B, D, H, W) -> (B, HW, D)
    out = ours(z)
    q, idx, losses = theirs(rows(z_peer))  # (B, HW, D), (B, HW, n_q), (n_q,)
    assert torch.equal(out.indices.reshape(idx.shape), idx)
    torch.testing.assert_close(rows(out.z_q), q, rtol=0, atol=1e-5)
    # level d: the peer's ||r_{d-1} - sg[e_d]||^2 is our ||z - sg[zhat^(d)]||^2 (r_d = z - zhat^(d))
    torch.testing.assert_close(losses.sum(), 0.25 * out.commitment_loss, rtol=1e-5, atol=0)
    out.z_q.backward(g)
    q.backward(rows(g))
    # Each level's output is straight-through from its residual, and every residual r_{d-1} =
    # z - sg[...] has the identity Jacobian to z, so the sum of n_q levels passes n_q g to the
    # encoder. Ours (RQ-VAE, SoundStream: one straight-through from z to the sum) passes g.
    torch.testing.assert_close(z.grad, g, rtol=0, atol=0)
    torch.testing.assert_close(z_peer.grad, n_q * g, rtol=1e-6, atol=1e-6)


LEVELS = [8, 5, 5, 5]  # 8 * 5^3 = 1000 codes, an even and three odd channels


def test_fsq_same_implicit_codebook_and_index_order():
    ours, theirs = FSQ(LEVELS), vqp.FSQ(levels=LEVELS)
    codes = theirs.indices_to_codes(torch.arange(ours.codebook_size))
    torch.testing.assert_close(ours.implicit_codebook(), codes, rtol=0, atol=0)
    assert torch.equal(theirs.codes_to_indices(codes).long(), torch.arange(ours.codebook_size))


def test_fsq_bound_differs_peer_widens_by_one_plus_eps_and_shifts_by_atanh_where_official_code_narrows_and_uses_tan():
    ours, theirs = FSQ(LEVELS), vqp.FSQ(levels=LEVELS)
    z = seeded(8, shape=(4096, 4), scale=2.0)
    z_peer = z.detach().clone().requires_grad_()
    zq, zq_peer = ours.quantize(z), theirs.quantize(z_peer)
    # half-widths: official fsq.ipynb h = (L - 1)(1 - eps) / 2, the peer (L - 1)(1 + eps) / 2
    eps = 1e-3
    lv = torch.tensor(LEVELS, dtype=torch.float32)
    h_ours, h_peer = (lv - 1) * (1 - eps) / 2, (lv - 1) * (1 + eps) / 2
    off = torch.tensor([0.5, 0, 0, 0])
    s_ours, s_peer = torch.tan(off / h_ours), torch.atanh(off / h_peer)
    assert abs(float(s_ours[0]) - 0.143983) < 1e-5 and abs(float(s_peer[0]) - 0.143695) < 1e-5  # L = 8
    # the quantised values agree except where the two bounds round to different integers
    bound_ours = torch.tanh(z.detach() + s_ours) * h_ours - off
    bound_peer = torch.tanh(z.detach() + s_peer) * h_peer - off
    torch.testing.assert_close(zq, torch.round(bound_ours) / (lv // 2), rtol=0, atol=0)
    torch.testing.assert_close(zq_peer, torch.round(bound_peer) / (lv // 2), rtol=0, atol=1e-7)
    differ = zq != zq_peer
    assert torch.equal(differ, torch.round(bound_ours) != torch.round(bound_peer))
    assert 0 < differ.float().mean() < 0.01  # a few entries near a rounding boundary, under 1 %
    # gradients: odd L has no shift, so the ratio is exactly (1 + eps) / (1 - eps)
    zq.sum().backward()
    zq_peer.sum().backward()
    ratio = z_peer.grad[:, 1:] / z.grad[:, 1:]
    torch.testing.assert_close(ratio, torch.full_like(ratio, (1 + eps) / (1 - eps)), rtol=1e-5, atol=0)


def test_fsq_two_levels_official_tan_shift_is_defined_the_peer_refuses_two_levels_in_this_bound():
    # L = 2: o / h = 0.5 / 0.4995 > 1 has no atanh, so the official code's tan is the only choice
    # for its narrowed bound; the decision boundary (the input where the code changes) is then
    # z = -tan(0.5 / 0.4995) = -1.561. The peer's bound refuses L = 2 (it asks for its other,
    # symmetry-preserving bound), so there is nothing to compare.
    z = torch.linspace(-5, 1, 6001)[:, None]  # step 1e-3
    q = FSQ([2]).quantize(z)
    flip = float(z[(q[:, 0] > q[0, 0]).nonzero()[0, 0], 0])  # the first input of the upper code
    assert abs(flip - (-math.tan(0.5 / 0.4995))) < 2e-3
    with pytest.raises(AssertionError, match="preserve_symmetry"):
        vqp.FSQ(levels=[2])


BITS = 10


def bit_reverse(idx: torch.Tensor, bits: int) -> torch.Tensor:
    """The index with its bits in the opposite order (channel 0 as the most significant bit)."""
    digits = (idx.unsqueeze(-1) >> torch.arange(bits)) & 1  # (..., bits), bit i of idx
    return (digits * (2 ** torch.arange(bits - 1, -1, -1))).sum(-1)


def run_lfq_peer(theirs, z: torch.Tensor, g: torch.Tensor, monkeypatch, *, exact_log: bool):
    """The peer's LFQ forward and backward on a copy of z; exact_log=True lifts its clamp of log p at
    1e-5 (lookup_free_quantization.log) to 1e-30, as ours computes the entropies exactly."""
    lfq_module = vqp.lookup_free_quantization
    clamp = 1e-30 if exact_log else 1e-5
    with monkeypatch.context() as m:
        m.setattr(lfq_module, "log", lambda t, eps=1e-5: t.clamp(min=clamp).log())
        z = z.detach().clone().requires_grad_()
        (q, idx, aux), parts = theirs(z, inv_temperature=100.0, return_loss_breakdown=True)
        torch.autograd.backward((q, aux), (g, None))
    return q, idx, aux, parts, z.grad


def check_lfq_against_peer(out, ours_grad, theirs, z, g, bits, monkeypatch):
    q, idx, aux, parts, grad = run_lfq_peer(theirs, z, g, monkeypatch, exact_log=True)
    torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-6)
    # Ours: channel i is bit 2^i. The peer's `mask` is 2^(d-1-i): its channel 0 is the most
    # significant bit (as in the BSQ authors' code). The same codebook, numbered differently.
    assert torch.equal(out.indices, bit_reverse(idx, bits))
    assert not torch.equal(out.indices, idx)
    torch.testing.assert_close(out.per_sample_entropy, parts.per_sample_entropy, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.codebook_entropy, parts.batch_entropy, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.loss, aux, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours_grad, grad, rtol=1e-4, atol=1e-6)
    # the peer as released clamps log p at 1e-5: the per-sample entropy comes out a little lower
    _, _, _, clamped, grad_clamped = run_lfq_peer(theirs, z, g, monkeypatch, exact_log=False)
    gap = float(((out.per_sample_entropy - clamped.per_sample_entropy) / out.per_sample_entropy).detach())
    assert 0 < gap < 1e-4
    return float((ours_grad - grad_clamped).abs().max())


def test_lfq_same_codes_entropies_loss_and_gradient_indices_in_the_opposite_bit_order(monkeypatch):
    ours = LFQ(BITS, entropy_weight=0.1, gamma=1.0, temperature=0.01).train()
    theirs = vqp.LFQ(dim=BITS, codebook_size=2**BITS, entropy_loss_weight=0.1, diversity_gamma=1.0).train()
    z = seeded(9, shape=(4, BITS, 8, 8), scale=0.05)  # small inputs: soft assignments far from one-hot
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(10))
    out = ours(z)
    torch.autograd.backward((out.z_q, out.loss), (g, None))
    gap = check_lfq_against_peer(out, z.grad, theirs, z, g, BITS, monkeypatch)
    assert gap < 1e-3  # the released clamp moves a few gradient entries by up to ~5e-4


def test_bsq_equals_the_peer_spherical_lfq_with_our_projections(monkeypatch):
    bits, dim = 8, 16
    ours = BSQ(bits, dim, entropy_weight=0.1, gamma=1.0, temperature=0.01, beta=0.25).train()
    theirs = vqp.LFQ(
        dim=dim,
        codebook_size=2**bits,
        entropy_loss_weight=0.1,
        diversity_gamma=1.0,
        commitment_loss_weight=0.25,
        spherical=True,
        has_projections=True,
    ).train()
    theirs.project_in.load_state_dict(ours.project_in.state_dict())
    theirs.project_out.load_state_dict(ours.project_out.state_dict())
    z = seeded(11, shape=(4, dim, 8, 8))
    g = torch.randn(z.shape, generator=torch.Generator().manual_seed(12))
    out = ours(z)
    torch.autograd.backward((out.z_q, out.loss), (g, None))
    gap = check_lfq_against_peer(out, z.grad, theirs, z, g, bits, monkeypatch)
    assert gap < 1e-4
