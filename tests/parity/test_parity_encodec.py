"""Parity with the official EnCodec (facebookresearch/encodec, package `encodec` 0.1.1).

Modules compared: reference_impls.encodec (the bandwidth arithmetic) against
encodec/quantization/vq.py, reference_impls.residual_vq (one codebook per level, as EnCodec uses)
against encodec/quantization/core_vq.py's ResidualVectorQuantization, and reference_impls.vq's
ema_update against its EuclideanCodebook update.

encodec's `__init__` imports torchaudio (for audio files), which the quantiser never calls; the
package is installed without dependencies (tests/parity/install.sh) and `encodec.quantization` is
imported with encodec's `__init__` skipped. Tolerances: indices exact, float32 values 1e-6, EMA
buffers 1e-5 relative.
"""

from __future__ import annotations

import pytest
import torch

from reference_impls.encodec import bandwidth_per_codebook, frame_rate, num_codebooks
from reference_impls.residual_vq import ResidualVQ
from reference_impls.vq import ema_update


@pytest.fixture(scope="module")
def qt(import_peer):
    return import_peer(
        "encodec.quantization", bare=("encodec",), reason="encodec is not installed (bash tests/parity/install.sh)"
    )


@pytest.mark.parametrize(
    ("sample_rate", "bandwidths", "want"),
    [(24_000, [1.5, 3.0, 6.0, 12.0, 24.0], [2, 4, 8, 16, 32]), (48_000, [3.0, 6.0, 12.0, 24.0], [2, 4, 8, 16])],
)
def test_codebooks_per_bandwidth_equal_the_released_quantizer(qt, sample_rate, bandwidths, want):
    # the released models: SEANet ratios (8, 5, 4, 2), 1024 bins; frame rate ceil(sr / 320)
    fps = frame_rate(sample_rate, (2, 4, 5, 8))
    peer = qt.ResidualVectorQuantizer(dimension=128, n_q=32, bins=1024)
    assert peer.get_bandwidth_per_quantizer(fps) * 1000 == bandwidth_per_codebook(fps, 1024)
    ours = [num_codebooks(b, fps, 1024) for b in bandwidths]
    assert ours == [peer.get_num_quantizers_for_bandwidth(fps, b) for b in bandwidths] == want


K, D, NQ = 64, 16, 4
SHAPE = (3, D, 40)  # (B, D, T) frames


def pair():
    ours = ResidualVQ(K, D, depth=NQ, shared_codebook=False, generator=torch.Generator().manual_seed(1))
    return ours.train()


def peer_rvq(qt, ours: ResidualVQ):
    from encodec.quantization.core_vq import ResidualVectorQuantization

    peer = ResidualVectorQuantization(
        num_quantizers=NQ, dim=D, codebook_size=K, kmeans_init=False, threshold_ema_dead_code=0, decay=0.99
    ).train()
    with torch.no_grad():
        for d, layer in enumerate(peer.layers):
            layer._codebook.embed.copy_(ours.codebook[d])
            layer._codebook.embed_avg.copy_(ours.codebook[d])
    return peer


def test_residual_quantiser_same_codes_values_commitment_and_one_straight_through_gradient(qt):
    ours = pair()
    peer = peer_rvq(qt, ours)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)).requires_grad_()
    x_peer = x.detach().clone().requires_grad_()
    g = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    out = ours(x)
    q, idx, losses = peer(x_peer)  # (B, D, T), (n_q, B, T), (n_q, 1)
    assert torch.equal(out.indices, idx.permute(1, 2, 0))  # ours (B, T, n_q)
    torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-6)
    # level d: ||r_{d-1} - sg[e_d]||^2 (EnCodec, weight 1) = ||z - sg[zhat^(d)]||^2 (ours)
    torch.testing.assert_close(losses.sum(), out.commitment_loss, rtol=1e-6, atol=0)
    out.z_q.backward(g)
    q.backward(g)
    # EnCodec subtracts the straight-through output itself, so the residuals after level 1 carry
    # no gradient and the encoder receives the decoder's gradient once, as from ours
    torch.testing.assert_close(x.grad, g, rtol=0, atol=0)
    torch.testing.assert_close(x_peer.grad, g, rtol=0, atol=1e-7)


def test_ema_update_of_the_first_level_equals_the_released_codebook_update(qt):
    ours = pair()
    peer = peer_rvq(qt, ours)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    book = peer.layers[0]._codebook
    codebook, cluster_size, embed_sum = book.embed.clone(), book.cluster_size.clone(), book.embed_avg.clone()
    _, idx, _ = peer(x)  # one training step: the peer updates its EMA buffers in place
    rows = x.movedim(1, -1).reshape(-1, D)  # (B T, D) the first level's input
    ema_update(codebook, cluster_size, embed_sum, rows, idx[0].reshape(-1), 0.99, 1e-5)
    torch.testing.assert_close(cluster_size, book.cluster_size, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(embed_sum, book.embed_avg, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(codebook, book.embed, rtol=1e-5, atol=1e-6)
    # EnCodec starts the counts at 0 (ours at 1: VectorQuantizer registers ones); here both start at the peer's
    assert float(cluster_size.sum()) == pytest.approx(0.01 * rows.shape[0], rel=1e-5)
