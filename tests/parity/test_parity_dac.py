"""Parity with the official DAC (descriptinc/descript-audio-codec, package `descript-audio-codec` 1.0.0).

Module compared: reference_impls.dac.DACQuantizer against dac/nn/quantize.py's
ResidualVectorQuantize, with the peer's weight-normalised 1x1 convolutions copied into our linear
projections (a 1x1 Conv1d is a Linear over channels).

dac's `__init__` imports audiotools (audio I/O and training utilities), which the quantiser never
calls; the package is installed without dependencies (tests/parity/install.sh) and
`dac.nn.quantize` is imported with `dac` and `dac.nn`'s `__init__` skipped. Tolerances: indices
exact, values and gradients 1e-5 (float32 through two projections per level).
"""

from __future__ import annotations

import pytest
import torch

from reference_impls.dac import DACQuantizer

# the peer's layers use torch.jit.script and torch.nn.utils.weight_norm, both deprecated in this torch
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

K, D, C, NQ = 64, 32, 8, 4  # codes, width, code width, levels
SHAPE = (3, D, 50)  # (B, D, T)


@pytest.fixture(scope="module")
def quantize(import_peer):
    return import_peer(
        "dac.nn.quantize",
        bare=("dac", "dac.nn"),
        reason="descript-audio-codec is not installed (bash tests/parity/install.sh)",
    )


def weight_of(conv: torch.nn.Module) -> torch.Tensor:
    """The effective (out, in) weight of a weight-normalised kernel-1 Conv1d: g v / ||v||."""
    return torch._weight_norm(conv.weight_v, conv.weight_g, 0)[:, :, 0]


def pair(quantize, *, dropout: float = 0.0):
    torch.manual_seed(0)
    peer = quantize.ResidualVectorQuantize(
        input_dim=D, n_codebooks=NQ, codebook_size=K, codebook_dim=C, quantizer_dropout=dropout
    ).train()
    ours = DACQuantizer(K, D, NQ, code_dim=C, dropout=dropout, generator=torch.Generator().manual_seed(1)).train()
    with torch.no_grad():
        for level, q in zip(ours.levels, peer.quantizers, strict=True):
            level.in_proj.weight.copy_(weight_of(q.in_proj))
            level.in_proj.bias.copy_(q.in_proj.bias)
            level.out_proj.weight.copy_(weight_of(q.out_proj))
            level.out_proj.bias.copy_(q.out_proj.bias)
            level.codebook.copy_(q.codebook.weight)
    return ours, peer


def test_same_codes_values_losses_and_gradients_to_encoder_and_codebooks(quantize):
    ours, peer = pair(quantize)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)).requires_grad_()
    x_peer = x.detach().clone().requires_grad_()
    g = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    out = ours(x)
    z_q, codes, _, commitment, codebook = peer(x_peer)  # (B, D, T), (B, n_q, T), ..., scalars
    assert torch.equal(out.indices, codes.transpose(1, 2))  # ours (B, T, n_q)
    torch.testing.assert_close(out.z_q, z_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.commitment_loss, commitment, rtol=1e-5, atol=0)
    torch.testing.assert_close(out.codebook_loss, codebook, rtol=1e-5, atol=0)
    # loss = codebook + beta * commitment in ours; DAC's trainer weights the two terms in its config
    torch.autograd.backward((out.z_q, out.codebook_loss + out.commitment_loss), (g, None))
    torch.autograd.backward((z_q, codebook + commitment), (g, None))
    torch.testing.assert_close(x.grad, x_peer.grad, rtol=1e-4, atol=1e-5)
    for level, q in zip(ours.levels, peer.quantizers, strict=True):
        torch.testing.assert_close(level.codebook.grad, q.codebook.weight.grad, rtol=1e-4, atol=1e-6)


def test_at_inference_the_first_n_q_levels_give_the_same_codes(quantize):
    ours, peer = pair(quantize)
    ours.eval()
    peer.eval()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    for n_q in (1, 2, NQ):
        out = ours(x, n_q=n_q)
        z_q, codes, *_ = peer(x, n_quantizers=n_q)
        assert torch.equal(out.indices, codes.transpose(1, 2))
        torch.testing.assert_close(out.z_q, z_q, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.lookup(out.indices), peer.from_codes(codes)[0], rtol=1e-5, atol=1e-5)


def test_quantizer_dropout_the_released_code_drops_the_first_samples_ours_draws_per_sample(quantize):
    # DAC: n_quantizers[:int(B p)] = randint(1, N_q + 1); the other samples keep all levels. Ours draws
    # each sample's dropout from the generator (the batch order is random either way).
    ours, peer = pair(quantize, dropout=0.5)
    x = torch.randn(8, D, 20, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(6)
    z_q, *_ = peer(x)
    full = DACQuantizer.forward(ours, x, n_q=NQ).z_q.detach()  # every level
    kept_all = [(z_q[i] - full[i]).abs().max() < 1e-5 for i in range(8)]
    assert all(kept_all[4:])  # the last B (1 - p) = 4 samples always keep every level
    assert not all(kept_all[:4])  # some of the first 4 dropped levels
    out = ours(x)
    assert out.num_quantizers.shape == (8,) and int(out.num_quantizers.min()) >= 1
