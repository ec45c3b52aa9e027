"""VideoGPT's tokenizer: a VQ-VAE with 3-D convolutions over (T, H, W) and an EMA codebook.

Paper and note:
    - VideoGPT, Yan et al. 2021 (papers/yan2021videogpt.md): the VQ-VAE stage.
    The codebook is vq.VectorQuantizer(ema=True): nearest-code lookup, straight-through
    gradients and exponential-moving-average code updates (VQ-VAE-2 style), imported, not copied.

What is implemented:
    encoder   x (B, C, T, H, W) -> log2(stride_a) stride-2 3-D convolutions along each axis a
              (an axis stops shrinking once its stride is reached) -> residual 3-D conv blocks
              -> z_e (B, D, T / s_t, H / s_h, W / s_w)
    quantise  k = argmin_j ||z_e - e_j||, z_q = e_k, codebook by EMA, loss = beta ||z_e - sg[e_k]||^2
    decoder   the mirror image with transposed 3-D convolutions -> (B, C, T, H, W)
    The token grid is (T / s_t, H / s_h, W / s_w), flattened in raster order (t, h, w) for the
    GPT prior.

Notation (code -> paper):
    strides     the (T, H, W) downsampling of the encoder     dim    the code dimension
    num_codes   codebook size K                                z_e, z_q, indices as in vq.py

Left out: the axial self-attention layers inside the residual blocks and the GPT prior itself
(the shared autoregressive prior is a separate module). Strides must be powers of two.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import QuantizerOutput, VectorQuantizer


def token_grid_shape(video_shape: tuple[int, int, int], strides: tuple[int, int, int]) -> tuple[int, int, int]:
    """(T, H, W) of the clip -> (T / s_t, H / s_h, W / s_w) of the token grid."""
    for n, s in zip(video_shape, strides, strict=True):
        if n % s:
            raise ValueError(f"size {n} is not divisible by stride {s}")
    return tuple(n // s for n, s in zip(video_shape, strides, strict=True))


def _steps(strides: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per-layer strides: layer i halves axis a while 2^i < stride_a, else keeps it."""
    logs = [int(math.log2(s)) for s in strides]
    if any(2**n != s for n, s in zip(logs, strides, strict=True)):
        raise ValueError("strides must be powers of two")
    return [tuple(2 if i < n else 1 for n in logs) for i in range(max(logs))]


class ResBlock3d(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv3d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv3d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class VideoVQVAE(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        hidden: int = 8,
        dim: int = 4,
        num_codes: int = 32,
        strides: tuple[int, int, int] = (4, 2, 2),
        n_res: int = 1,
        beta: float = 0.25,
        decay: float = 0.99,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.strides = tuple(strides)
        steps = _steps(self.strides)
        enc: list[nn.Module] = []
        ch = in_channels
        for st in steps:
            k = tuple(4 if s == 2 else 3 for s in st)  # kernel 4 / pad 1 halves, kernel 3 / pad 1 keeps
            enc += [nn.Conv3d(ch, hidden, k, stride=st, padding=1), nn.ReLU()]
            ch = hidden
        enc += [nn.Conv3d(ch, hidden, 3, padding=1)] + [ResBlock3d(hidden) for _ in range(n_res)]
        enc += [nn.ReLU(), nn.Conv3d(hidden, dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(num_codes, dim, beta=beta, ema=True, decay=decay, generator=generator)
        dec: list[nn.Module] = [nn.Conv3d(dim, hidden, 3, padding=1)] + [ResBlock3d(hidden) for _ in range(n_res)]
        for i, st in enumerate(reversed(steps)):
            out = in_channels if i == len(steps) - 1 else hidden
            k = tuple(4 if s == 2 else 3 for s in st)
            dec += [nn.ReLU(), nn.ConvTranspose3d(hidden, out, k, stride=st, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Video (B, C, T, H, W) -> token indices (B, t, h, w)."""
        return self.quantizer(self.encoder(x)).indices

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices (B, t, h, w) -> video (B, C, T, H, W)."""
        return self.decoder(self.quantizer.lookup(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantizer(self.encoder(x))  # z_q (B, D, t, h, w)
        return self.decoder(q.z_q), q
