import math

import pytest
import torch

from reference_impls.encodec import EnCodec, bandwidth_per_codebook, frame_rate, num_codebooks


def _model(seed=0):
    torch.manual_seed(seed)
    # 800 Hz with hop 8: 100 frames/s; K = 16: 4 bits per frame per codebook -> 0.4 kbps per codebook
    return EnCodec(
        sample_rate=800,
        target_bandwidths=(0.4, 0.8, 1.6),
        strides=(2, 4),
        codebook_size=16,
        generator=torch.Generator().manual_seed(seed),
    ).eval()


def _wave(seconds=2, seed=1):
    return torch.randn(1, 1, 800 * seconds, generator=torch.Generator().manual_seed(seed))


def test_released_24khz_ladder_maps_bandwidths_to_codebooks():
    fps = frame_rate(24_000, (2, 4, 5, 8))
    assert fps == 75 and bandwidth_per_codebook(fps, 1024) == 750
    assert [num_codebooks(b, fps, 1024) for b in (1.5, 3, 6, 12, 24)] == [2, 4, 8, 16, 32]
    # the 48 kHz model: same strides, 150 frames/s, 1.5 kbps per codebook
    fps48 = frame_rate(48_000, (2, 4, 5, 8))
    assert [num_codebooks(b, fps48, 1024) for b in (3, 6, 12, 24)] == [2, 4, 8, 16]


def test_bandwidth_selects_how_many_codebooks_are_sent_and_lower_rates_are_prefixes():
    model = _model()
    assert model.quantizer.depth == 4  # N_q from the top rung, 1.6 kbps
    x = _wave()
    codes = {b: model.encode_at(x, bandwidth=b) for b in model.target_bandwidths}
    assert [codes[b].shape[-1] for b in (0.4, 0.8, 1.6)] == [1, 2, 4]
    assert torch.equal(codes[1.6][..., :2], codes[0.8]) and torch.equal(codes[0.8][..., :1], codes[0.4])


def test_bits_emitted_per_second_equal_the_target_bandwidth():
    model = _model()
    seconds = 2
    for b in model.target_bandwidths:
        codes = model.encode_at(_wave(seconds), bandwidth=b)
        bits = codes.numel() * math.log2(model.quantizer.num_codes)
        assert bits / seconds == pytest.approx(b * 1000)
        assert model.bitrate_at(b) == pytest.approx(b * 1000)


def test_a_bandwidth_between_rungs_never_exceeds_its_target_and_unlisted_ones_are_refused():
    assert num_codebooks(5.0, 75, 1024) == 6  # 4.5 kbps, not 7 codebooks (5.25 kbps)
    assert num_codebooks(0.1, 75, 1024) == 1  # at least one codebook
    with pytest.raises(ValueError, match="not offered"):
        _model().encode_at(_wave(), bandwidth=1.0)


def test_codebook_count_uses_log2_of_the_codebook_size_not_ten_bits():
    """encodec/model.py sizes the quantiser with a hard-coded 10 bits; right only for 1024 codes."""
    fps, k, top = 50, 2048, 6.0  # a 32 kHz, hop-640 codec with 2048 codes (MusicGen's tokenizer)
    ours = num_codebooks(top, fps, k)
    ten_bits = int(1000 * top // (fps * 10))
    assert ours == 10 and ten_bits == 12
    assert ours * bandwidth_per_codebook(fps, k) <= top * 1000 < ten_bits * bandwidth_per_codebook(fps, k)
    # 4 codebooks of 2048 at 50 Hz: 2.2 kbps
    assert 4 * bandwidth_per_codebook(fps, k) == 2200


def test_frame_rate_rounds_up_like_the_released_code():
    assert frame_rate(44_100, (2, 4, 5, 8)) == 138  # 137.8125 frames/s
    assert frame_rate(32_000, (4, 4, 5, 8)) == 50


def test_released_form_initialises_its_codebooks_by_kmeans_and_keeps_the_bandwidth_prefixes():
    torch.manual_seed(0)
    model = EnCodec(
        sample_rate=800,
        target_bandwidths=(0.4, 0.8, 1.6),
        codebook_size=16,
        form="encodec",
        generator=torch.Generator().manual_seed(0),
    )
    assert not model.quantizer.inited.any()
    model.train()(_wave(seed=3), 2)  # a level is initialised on the first training batch that reaches it
    assert model.quantizer.inited.tolist() == [True, True, False, False]
    model(_wave(seed=4), 4)
    assert model.quantizer.inited.all()
    codes = {b: model.eval().encode_at(_wave(), bandwidth=b) for b in (0.4, 0.8, 1.6)}
    assert torch.equal(codes[1.6][..., :2], codes[0.8]) and torch.equal(codes[0.8][..., :1], codes[0.4])
