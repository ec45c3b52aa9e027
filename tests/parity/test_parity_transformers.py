"""Parity with Hugging Face transformers (the `parity` extra, version 5.23.0).

Modules compared:
    - reference_impls.musicgen (delay pattern, build_sequence) against MusicgenForCausalLM's
      build_delay_pattern_mask;
    - reference_impls.vq against ChameleonVQVAEVectorQuantizer (Chameleon's image tokenizer);
    - reference_impls.residual_vq against EncodecResidualVectorQuantizer;
    - reference_impls.dac against DacResidualVectorQuantizer.
The modules are built from small configurations, with our parameters copied in; nothing is
downloaded. Tolerances: indices and masks exact, float32 values 1e-5.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from reference_impls.dac import DACQuantizer
from reference_impls.musicgen import build_sequence, delay_pattern, valid_mask
from reference_impls.residual_vq import ResidualVQ
from reference_impls.vq import VectorQuantizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[parity]')")


def test_musicgen_delay_pattern_mask_is_our_delay_sequence_after_the_start_column():
    from transformers.models.musicgen.modeling_musicgen import MusicgenForCausalLM

    k, t, pad = 4, 10, 2048
    codes = torch.randint(0, pad, (2, k, t), generator=torch.Generator().manual_seed(0))
    # the decoder's input starts with one pad (start) column; max_length = 1 + T + (K - 1) steps
    prompt = torch.cat([torch.full((2, k, 1), pad), codes], dim=-1).reshape(2 * k, t + 1)
    model = SimpleNamespace(num_codebooks=k, config=SimpleNamespace(audio_channels=1))  # all the method reads
    # with the whole prompt given, the pattern mask holds every code at its delayed slot, pad elsewhere
    _, full = MusicgenForCausalLM.build_delay_pattern_mask(model, prompt, pad, max_length=t + k)
    full = full.reshape(2, k, t + k)
    pattern = delay_pattern(t, list(range(k)))  # MusicGen's delay: codebook q shifted by q
    assert torch.equal(full[..., 0], torch.full((2, k), pad))
    assert torch.equal(full[..., 1:], build_sequence(codes, pattern, pad))
    # with only the start column given, -1 marks exactly the slots to predict: our valid mask
    _, empty = MusicgenForCausalLM.build_delay_pattern_mask(model, prompt[:, :1], pad, max_length=t + k)
    empty = empty.reshape(2, k, t + k)
    assert torch.equal(empty[0, :, 1:] == -1, valid_mask(pattern))
    assert bool((empty[0, :, 1:][~valid_mask(pattern)] == pad).all()) and bool((empty[..., 0] == pad).all())


def test_chameleon_quantizer_same_codes_and_values_but_beta_weights_the_codebook_term():
    from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
    from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAEVectorQuantizer

    k, d = 128, 16
    ours = VectorQuantizer(k, d, beta=0.25, generator=torch.Generator().manual_seed(1)).train()
    peer = ChameleonVQVAEVectorQuantizer(ChameleonVQVAEConfig(embed_dim=d, num_embeddings=k)).train()
    with torch.no_grad():
        peer.embedding.weight.copy_(ours.codebook)
    z = torch.randn(2, d, 8, 8, generator=torch.Generator().manual_seed(2)).requires_grad_()
    z_peer = z.detach().clone().requires_grad_()
    out = ours(z)
    q, loss, idx = peer(z_peer)
    assert torch.equal(out.indices.reshape(-1), idx)
    torch.testing.assert_close(out.z_q, q, rtol=0, atol=1e-6)
    # The peer's loss is mean((sg[e] - z)^2) + beta * mean((e - sg[z])^2): commitment weight 1 and
    # codebook weight beta, the reverse of VQ-VAE Eq. 3 (ours: codebook 1, commitment beta; the same
    # order as taming-transformers' legacy VectorQuantizer2, see papers/esser2021taming.md).
    mse = out.commitment_loss
    torch.testing.assert_close(loss, 1.25 * mse, rtol=1e-6, atol=0)
    torch.testing.assert_close(out.loss, 1.25 * mse, rtol=1e-6, atol=0)  # equal only in value
    out.loss.backward()
    loss.backward()
    # encoder: ours beta * 2 (z - e) / N, the peer 2 (z - e) / N; codes: ours 1x, the peer beta x
    torch.testing.assert_close(z_peer.grad, z.grad / 0.25, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(peer.embedding.weight.grad, 0.25 * ours.codebook.grad, rtol=1e-5, atol=1e-9)


def test_encodec_quantizer_encode_and_decode_equal_our_residual_quantiser_at_each_bandwidth():
    from transformers import EncodecConfig
    from transformers.models.encodec.modeling_encodec import EncodecResidualVectorQuantizer

    k, d = 64, 16
    config = EncodecConfig(codebook_size=k, hidden_size=d, target_bandwidths=[1.5, 3.0, 6.0])  # 24 kHz, 75 Hz
    peer = EncodecResidualVectorQuantizer(config)
    assert peer.num_quantizers == 13  # floor(6000 / (75 log2 64)) = floor(13.3)
    generator = torch.Generator().manual_seed(3)
    ours = ResidualVQ(k, d, depth=peer.num_quantizers, shared_codebook=False, generator=generator)
    with torch.no_grad():
        for level, layer in enumerate(peer.layers):
            layer.codebook.embed.copy_(ours.codebook[level])
    ours.eval()
    x = torch.randn(2, d, 30, generator=torch.Generator().manual_seed(4))
    for bandwidth, n_q in ((1.5, 3), (3.0, 6), (6.0, 13)):  # floor(1000 B / 450)
        codes = peer.encode(x, bandwidth)  # (n_q, B, T)
        assert codes.shape[0] == n_q
        out = ours(x, n_q=n_q)
        assert torch.equal(out.indices, codes.permute(1, 2, 0))
        torch.testing.assert_close(peer.decode(codes), out.z_q, rtol=0, atol=1e-5)


def test_dac_quantizer_equals_our_factorised_residual_quantiser():
    from transformers import DacConfig
    from transformers.models.dac.modeling_dac import DacResidualVectorQuantizer

    k, d, c, nq = 64, 32, 8, 4
    peer = DacResidualVectorQuantizer(DacConfig(hidden_size=d, n_codebooks=nq, codebook_size=k, codebook_dim=c))
    ours = DACQuantizer(k, d, nq, code_dim=c, dropout=0.0, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for level, q in zip(ours.levels, peer.quantizers, strict=True):
            level.in_proj.weight.copy_(q.in_proj.weight[:, :, 0])
            level.in_proj.bias.copy_(q.in_proj.bias)
            level.out_proj.weight.copy_(q.out_proj.weight[:, :, 0])
            level.out_proj.bias.copy_(q.out_proj.bias)
            level.codebook.copy_(q.codebook.weight)
    ours.eval()
    peer.eval()
    x = torch.randn(2, d, 25, generator=torch.Generator().manual_seed(6))
    for n_q in (1, nq):
        z_q, codes, _, commitment, codebook = peer(x, n_quantizers=n_q)
        out = ours(x, n_q=n_q)
        assert torch.equal(out.indices, codes.transpose(1, 2))
        torch.testing.assert_close(out.z_q, z_q, rtol=1e-5, atol=1e-5)
        # the port returns one loss per sample: the sum of the batch-mean losses of the levels it
        # kept (the official code: the batch mean of per-sample masked losses); equal without dropout
        torch.testing.assert_close(commitment, out.commitment_loss.expand(2), rtol=1e-5, atol=0)
        torch.testing.assert_close(codebook, out.codebook_loss.expand(2), rtol=1e-5, atol=0)
