"""SoundStream: a causal 1-D convolutional codec over waveforms with a residual vector quantiser.

Paper and note:
    - SoundStream, Zeghidour et al. 2022 (papers/zeghidour2022soundstream.md): the model.
    The quantiser (one codebook per level, quantizer dropout) lives in reference_impls/residual_vq.py.

What is implemented:
    encoder   x (B, 1, T) -> causal conv -> blocks [residual unit with dilations 1, 3, 9;
              strided causal conv of stride s_b] -> causal conv to the embedding dim D
              -> (B, D, T / M) with M = prod_b s_b (one embedding every M samples)
    RVQ       N_q levels, each with its own codebook of K codes; n_q of them active
    decoder   mirror of the encoder with transposed convolutions -> (B, 1, T)
    rates     frame_rate = sample_rate / M          (embeddings per second)
              bitrate    = n_q * log2(K) * frame_rate     (bits per second)

Causality: every convolution pads on the left only, so the embedding of frame t depends on input
samples 0 .. (t + 1) M - 1 and nothing later; this is what makes streaming inference possible.

Notation (code -> paper):
    strides          the encoder block strides          hop        M, samples per embedding
    depth            N_q                                n_q        n_q active quantizers
    num_codes        N (codebook size per level)        dim        D (embedding dimension)

Two quantiser forms (SoundStream(form=...), reference_impls/residual_vq.py):
    "partial_sums"  residual_vq.ResidualVQ: gradient codebooks, commitment to every partial sum, one
                    straight-through from the sum to the encoder output (the default).
    "encodec"       residual_vq.EncodecRVQ: the released EnCodec quantiser, per-level EMA codebooks with
                    k-means initialisation and a per-level straight-through. Same codes and values;
                    the encoder receives only level 1's commitment gradient.

Left out: the adversarial (wave and STFT discriminator) and feature/multi-scale spectral
reconstruction losses, FiLM conditioning for denoising, and dead-code replacement; the module keeps
the signal path and the bitrate arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.residual_vq import EncodecRVQ, ResidualVQ, RVQOutput


def hop_length(strides: tuple[int, ...]) -> int:
    """M = prod of the encoder strides: input samples per embedding frame."""
    return math.prod(strides)


def frame_rate(sample_rate: float, strides: tuple[int, ...]) -> float:
    """Embedding frames per second."""
    return sample_rate / hop_length(strides)


def bitrate(n_q: int, codebook_size: int, frames_per_second: float) -> float:
    """Bits per second when n_q quantizers each send one log2(K)-bit index per frame."""
    return n_q * math.log2(codebook_size) * frames_per_second


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left by (kernel_size - 1) * dilation: output t sees inputs <= t * stride."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(F.pad(x, (pad, 0)))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv with kernel 2 * stride, trimmed on the right to exactly stride x the length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[..., : x.shape[-1] * self.stride[0]]


class ResidualUnit(nn.Module):
    def __init__(self, ch: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(ch, ch, 7, dilation=dilation)
        self.proj = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.elu(self.conv(F.elu(x))))


class Encoder(nn.Module):
    def __init__(self, channels: int, strides: tuple[int, ...], dim: int):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(1, channels, 7)]
        ch = channels
        for s in strides:
            layers += [ResidualUnit(ch, d) for d in (1, 3, 9)]
            layers += [nn.ELU(), CausalConv1d(ch, 2 * ch, 2 * s, stride=s)]
            ch *= 2
        layers += [nn.ELU(), CausalConv1d(ch, dim, 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, T) -> (B, D, T / M)


class Decoder(nn.Module):
    def __init__(self, channels: int, strides: tuple[int, ...], dim: int):
        super().__init__()
        ch = channels * 2 ** len(strides)
        layers: list[nn.Module] = [CausalConv1d(dim, ch, 7)]
        for s in reversed(strides):
            layers += [nn.ELU(), CausalConvTranspose1d(ch, ch // 2, 2 * s, stride=s)]
            ch //= 2
            layers += [ResidualUnit(ch, d) for d in (1, 3, 9)]
        layers += [nn.ELU(), CausalConv1d(ch, 1, 7)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, D, T / M) -> (B, 1, T)


class SoundStream(nn.Module):
    """Encoder -> residual VQ (per-level codebooks, quantizer dropout) -> decoder."""

    def __init__(
        self,
        channels: int = 4,
        strides: tuple[int, ...] = (2, 4),
        dim: int = 8,
        depth: int = 4,
        num_codes: int = 16,
        generator: torch.Generator | None = None,
        *,
        form: str = "partial_sums",
    ):
        super().__init__()
        self.strides = tuple(strides)
        self.encoder = Encoder(channels, self.strides, dim)
        if form == "partial_sums":
            self.quantizer = ResidualVQ(
                num_codes, dim, depth, shared_codebook=False, quantizer_dropout=True, generator=generator
            )
        elif form == "encodec":
            self.quantizer = EncodecRVQ(num_codes, dim, depth, quantizer_dropout=True, generator=generator)
        else:
            raise ValueError(f"form must be 'partial_sums' or 'encodec', got {form!r}")
        self.decoder = Decoder(channels, self.strides, dim)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Waveform (B, 1, T) -> codes (B, T / M, n_q)."""
        return self.quantizer(self.encoder(x), n_q).indices

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (B, T / M, n_q) -> waveform (B, 1, T)."""
        return self.decoder(self.quantizer.lookup(indices))

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, RVQOutput]:
        q = self.quantizer(self.encoder(x), n_q)  # z_q (B, D, T / M)
        return self.decoder(q.z_q), q

    def bitrate(self, n_q: int, sample_rate: float) -> float:
        return bitrate(n_q, self.quantizer.num_codes, frame_rate(sample_rate, self.strides))
