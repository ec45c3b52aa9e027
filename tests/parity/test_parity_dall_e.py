"""Parity with OpenAI's dVAE (openai/DALL-E, package `dall-e` 0.1).

Module compared: reference_impls.dvae's codebook lookup (evaluation) and codebook mixture
(training) against the first layer of the released Decoder, a 1 x 1 convolution from the vocab_size
one-hot channels: on a one-hot of the Encoder's argmax it picks one column of its weight (our
codebook row), on a relaxed one-hot it mixes the columns (our mix). The encoder and decoder
networks themselves are not compared: ours is a small stand-in (see reference_impls/dvae.py), and
the release has no training code (no relaxation, no KL) to compare with.

dall-e is installed without dependencies (tests/parity/install.sh): it asks for torchvision, whose
newest build replaces the pinned torch, and for blobfile and mypy; the model code imports only
torch, numpy, attrs and requests. Tolerance: float32, 1e-5.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_impls.dvae import DVAE
from reference_impls.gumbel import gumbel_softmax

dall_e = pytest.importorskip("dall_e", reason="dall-e is not installed (bash tests/parity/install.sh)")

K, N_INIT = 512, 8  # the smallest vocabulary and first width the release's validators accept


def released(seed: int = 0):
    torch.manual_seed(seed)
    kw = dict(n_hid=64, n_blk_per_group=1, vocab_size=K, use_mixed_precision=False)
    return dall_e.Encoder(input_channels=3, **kw).eval(), dall_e.Decoder(n_init=N_INIT, output_channels=3, **kw).eval()


def test_codebook_lookup_and_mixture_equal_the_decoder_input_layer_on_one_hot_and_relaxed_codes():
    enc, dec = released()
    ours = DVAE(in_ch=3, num_codes=K, code_dim=N_INIT)
    layer = dec.blocks.input  # Conv2d(K -> n_init, 1 x 1)
    with torch.no_grad():
        ours.codebook.copy_(layer.w[:, :, 0, 0].t())  # (K, n_init): column k of the 1 x 1 kernel is code k
    x = dall_e.map_pixels(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        logits = enc(x)  # (B, K, 4, 4): the release downsamples by 8
        indices = logits.argmax(dim=1)  # the release's usage: argmax, then one_hot into the decoder
        one_hot = F.one_hot(indices, K).permute(0, 3, 1, 2).float()
        bias = layer.b[None, :, None, None]
        torch.testing.assert_close(layer(one_hot), ours.lookup(indices) + bias, rtol=1e-5, atol=1e-5)
        y = gumbel_softmax(logits, 1.0, hard=False, generator=torch.Generator().manual_seed(2), dim=1)
        torch.testing.assert_close(layer(y), ours.mix(y) + bias, rtol=1e-5, atol=1e-5)  # y sums to 1
        assert dec(one_hot).shape == (2, 6, 32, 32)  # the logit-Laplace mean and log-scale per channel
