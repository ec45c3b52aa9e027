"""EnCodec: one residual-VQ audio codec served at several target bandwidths.

Paper and note:
    - EnCodec, Defossez et al. 2023, "High Fidelity Neural Audio Compression"
      (papers/defossez2023high.md), as released in facebookresearch/encodec (encodec/model.py,
      encodec/quantization/vq.py).
    The codec body is SoundStream's (reference_impls/soundstream.py: causal conv encoder and
    decoder, papers/zeghidour2022soundstream.md) and the quantiser is reference_impls/residual_vq.py
    (one codebook per level); this module adds the bandwidth arithmetic that picks how many levels
    are sent. EnCodec(form="encodec") uses the released quantiser instead (residual_vq.EncodecRVQ:
    per-level EMA codebooks with k-means initialisation, per-level straight-through, the loss
    mean_d ||r_{d-1} - sg[q_d]||^2); the default form="partial_sums" is residual_vq.ResidualVQ's.
    Both give the same codes and values; only level 1's commitment reaches the encoder in the
    released form, every level's in the default.

Equations implemented (encodec/model.py, encodec/quantization/vq.py):
    frame rate        f = ceil(sample_rate / prod(strides))                    frames per second
    bits per level    b = log2(K) * f                                          bits per second per codebook
    codebooks         n_q(B) = max(1, floor(1000 B / b))                      B: target bandwidth in kbps
    model depth       N_q = n_q(max target bandwidth)
    bitrate           R = n_q * log2(K) * f <= 1000 B                          (equality on the released rungs)
    24 kHz model: strides (2, 4, 5, 8), f = 75, K = 1024 -> b = 750 bps, B in {1.5, 3, 6, 12, 24}
    -> n_q in {2, 4, 8, 16, 32}.

Notation (code -> paper / released code):
    bandwidth   target bandwidth B (kbps)     codebook_size   bins, K      depth   N_q, n_q at the top rung

Left out: the SEANet LSTM, the multi-scale STFT discriminator and the loss balancer, the 48 kHz
model's 1 s overlapping segments with per-segment scale, and the small transformer that
entropy-codes the indices. Training draws n_q with the shared quantizer dropout (uniform over
1 .. N_q per batch, as the released audiocraft trainer does).
"""

from __future__ import annotations

import math

import torch

from reference_impls.soundstream import SoundStream, hop_length


def frame_rate(sample_rate: int, strides: tuple[int, ...]) -> int:
    """Latent frames per second, rounded up as in encodec/model.py."""
    return math.ceil(sample_rate / hop_length(strides))


def bandwidth_per_codebook(frames_per_second: int, codebook_size: int) -> float:
    """Bits per second one codebook costs: log2(K) bits per frame."""
    return math.log2(codebook_size) * frames_per_second


def num_codebooks(bandwidth_kbps: float, frames_per_second: int, codebook_size: int) -> int:
    """n_q for a target bandwidth: the most codebooks whose bitrate does not exceed it (at least one)."""
    return max(1, math.floor(bandwidth_kbps * 1000 / bandwidth_per_codebook(frames_per_second, codebook_size)))


class EnCodec(SoundStream):
    """SoundStream's codec with a fixed list of target bandwidths; `bandwidth` chooses the number of codebooks."""

    def __init__(
        self,
        *,
        sample_rate: int,
        target_bandwidths: tuple[float, ...],
        strides: tuple[int, ...] = (2, 4),
        channels: int = 4,
        dim: int = 8,
        codebook_size: int = 16,
        generator: torch.Generator | None = None,
        form: str = "partial_sums",
    ):
        fps = frame_rate(sample_rate, strides)
        depth = num_codebooks(max(target_bandwidths), fps, codebook_size)
        super().__init__(
            channels=channels,
            strides=strides,
            dim=dim,
            depth=depth,
            num_codes=codebook_size,
            generator=generator,
            form=form,
        )
        self.sample_rate, self.target_bandwidths, self.frames_per_second = sample_rate, tuple(target_bandwidths), fps

    def codebooks_for(self, bandwidth: float) -> int:
        """n_q at one of the model's target bandwidths; any other bandwidth is refused."""
        if bandwidth not in self.target_bandwidths:
            raise ValueError(
                f"bandwidth {bandwidth} kbps is not offered; expected one of {list(self.target_bandwidths)}"
            )
        return num_codebooks(bandwidth, self.frames_per_second, self.quantizer.num_codes)

    def encode_at(self, x: torch.Tensor, *, bandwidth: float) -> torch.Tensor:
        """Waveform (B, 1, T) -> codes (B, frames, n_q) at a target bandwidth (kbps)."""
        return self.encode(x, self.codebooks_for(bandwidth))

    def bitrate_at(self, bandwidth: float) -> float:
        """Bits per second actually sent at a target bandwidth."""
        return self.codebooks_for(bandwidth) * bandwidth_per_codebook(self.frames_per_second, self.quantizer.num_codes)
