import math

import pytest
import torch

from reference_impls.soundstream import SoundStream, bitrate, frame_rate, hop_length


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return SoundStream(generator=torch.Generator().manual_seed(seed), **kw)


def test_bitrate_is_n_q_times_log2_k_times_frame_rate():
    # a 24 kHz codec with strides (2, 4, 5, 8): one frame per 320 samples, 75 frames/s
    assert hop_length((2, 4, 5, 8)) == 320
    assert frame_rate(24000, (2, 4, 5, 8)) == 75.0
    assert bitrate(8, 1024, 75.0) == 6000.0  # 8 levels x 10 bits x 75 frames/s
    assert bitrate(1, 1024, 75.0) == 750.0
    assert bitrate(3, 256, 50.0) == 3 * 8 * 50
    # doubling the codebook adds one bit per level and frame
    assert bitrate(4, 2048, 75.0) - bitrate(4, 1024, 75.0) == 4 * 75.0
    m = _model(strides=(2, 4), num_codes=16)
    assert m.bitrate(3, 8000) == 3 * math.log2(16) * 8000 / 8


def test_codes_per_second_match_the_frame_rate_of_the_encoder():
    m = _model(strides=(2, 4), depth=3)
    x = torch.randn(2, 1, 64)
    codes = m.encode(x, n_q=3)
    assert codes.shape == (2, 64 // 8, 3)
    # the bits actually emitted equal the bitrate formula times the duration
    sample_rate = 16000
    emitted = codes.numel() / 2 * math.log2(m.quantizer.num_codes)
    assert emitted == m.bitrate(3, sample_rate) * 64 / sample_rate


def test_with_n_q_active_quantizers_only_the_first_n_q_codebooks_are_used():
    m = _model(depth=4)
    x = torch.randn(1, 1, 32)
    y, q = m(x, n_q=2)
    assert q.indices.shape[-1] == 2
    (y.pow(2).mean() + q.loss).backward()
    g = m.quantizer.codebook.grad
    assert g[:2].abs().sum() > 0 and torch.all(g[2:] == 0)
    with torch.no_grad():
        m.quantizer.codebook[2:].normal_()  # rewriting unused codebooks leaves the output alone
    y2, _ = m(x, n_q=2)
    assert torch.allclose(y, y2)


def test_more_quantizers_only_append_codes_and_decode_uses_them_all():
    m = _model(depth=4)
    x = torch.randn(1, 1, 32)
    c2, c4 = m.encode(x, n_q=2), m.encode(x, n_q=4)
    assert torch.equal(c4[..., :2], c2)
    assert not torch.allclose(m.decode(c2), m.decode(c4))
    y4, _ = m(x, n_q=4)
    assert torch.allclose(m.decode(c4), y4, atol=1e-5)


def test_encoder_is_causal_frame_t_ignores_samples_after_its_hop():
    m = _model(strides=(2, 4))
    x = torch.randn(1, 1, 64, requires_grad=True)
    z = m.encoder(x)  # (1, D, 8), one frame per 8 samples
    t = 3
    z[0, :, t].sum().backward()
    grad = x.grad[0, 0]
    assert torch.all(grad[(t + 1) * 8 :] == 0)
    assert grad[: (t + 1) * 8].abs().sum() > 0


def test_decoder_restores_the_input_length_and_is_causal():
    m = _model(strides=(2, 4))
    z = torch.randn(1, 8, 8, requires_grad=True)
    y = m.decoder(z)
    assert y.shape == (1, 1, 64)
    y[0, 0, 15].backward()  # sample 15 belongs to frame 1
    assert torch.all(z.grad[..., 2:] == 0)


def test_encodec_form_with_the_same_codebooks_reconstructs_the_same_and_unknown_forms_are_refused():
    torch.manual_seed(0)
    ours = SoundStream(generator=torch.Generator().manual_seed(1)).eval()
    torch.manual_seed(0)
    released = SoundStream(generator=torch.Generator().manual_seed(1), form="encodec").eval()
    with torch.no_grad():
        released.quantizer.codebook.copy_(ours.quantizer.codebook)
        released.quantizer.inited.fill_(True)
    x = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(2))
    (y, q), (y2, q2) = ours(x, 3), released(x, 3)
    assert torch.equal(q.indices, q2.indices)
    torch.testing.assert_close(y2, y, rtol=0, atol=1e-6)
    torch.testing.assert_close(released.decode(q2.indices), y, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="form must be"):
        SoundStream(form="ema")
