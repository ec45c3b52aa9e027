"""Jukebox: three VQ-VAE levels at different hop lengths, random restarts, upsampler priors.

Paper and note:
    - Jukebox, Dhariwal et al. 2020 (papers/dhariwal2020jukebox.md): the VQ-VAE with
      codebook restarts and the upsampler priors conditioned on the level above.
    The nearest-code lookup, straight-through gradient and EMA update come from vq.py
    (VectorQuantizer with ema=True); causal attention and sinusoidal positions from attention.py.

Multi-level VQ-VAE:
    level l has its own encoder from the raw waveform, downsampling by its hop length h_l
    (log2 h_l stride-2 convolutions), its own codebook and its own decoder back to audio:
        z^(l) = VQ_l(E_l(x)),  len(z^(l)) = T / h_l       (hops 8, 32, 128 in the paper)
    Levels are not stacked: each reconstructs x on its own.

Random restarts (as in the released bottleneck code):
    N_k <- mu N_k + (1 - mu) n_k   (EMA usage of code k over roughly 1 / (1 - mu) batches)
    if N_k < threshold: e_k <- a randomly chosen encoder output of the current batch
    So a code unused over the EMA window is moved to where the data are.

Upsampler prior (level l below level l + 1):
    p(z^(l) | z^(l+1)) = prod_t p(z^(l)_t | z^(l)_{<t}, c_t),
    c = upsample(embed(z^(l+1))) by r = h_{l+1} / h_l, so c_t comes from z^(l+1)_{floor(t / r)}:
    conditioning is aligned in time with the tokens being generated.

Notation (code -> paper):
    hops          hop lengths (compression factors) of the levels      decay     mu (EMA)
    threshold     the usage threshold of a restart                      ratio     h_{l+1} / h_l

Left out: the spectral loss, the residual dilated stacks of the real encoders, the artist,
genre and lyrics conditioning, windowed sampling, and the scaled sparse transformers; the
upsampler's conditioner is an embedding repeated r times plus a linear map (the paper uses
WaveNet-style dilated and transposed convolutions) and its prior is one causal attention block.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions
from reference_impls.vq import QuantizerOutput, VectorQuantizer, distributed


def level_lengths(n_samples: int, hops: tuple[int, ...]) -> list[int]:
    """Token count of each level for a clip of n_samples: T / h_l."""
    for h in hops:
        if n_samples % h:
            raise ValueError(f"{n_samples} samples are not a multiple of hop {h}")
    return [n_samples // h for h in hops]


class RestartingQuantizer(VectorQuantizer):
    """EMA vector quantiser whose codes with EMA usage below `threshold` are restarted
    at random encoder outputs of the current batch (training mode only)."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        decay: float = 0.99,
        threshold: float = 1.0,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__(num_codes, dim, beta=beta, ema=True, decay=decay, generator=generator)
        self.threshold, self.generator = threshold, generator

    @torch.no_grad()
    def restart_dead_codes(self, rows: torch.Tensor) -> torch.Tensor:
        """Move every code whose usage N_k < threshold to a random row of rows (N, D).
        Returns the bool mask (K,) of restarted codes.

        Under torch.distributed (every rank holding the same number of rows), the usage is already
        all-reduced by `ema_update`, so every rank finds the same dead codes; the rows of all ranks
        are gathered in rank order, rank 0 draws the restart rows from them and broadcasts them, as
        the official bottleneck.py does. N processes then restart exactly as one process fed the
        concatenated batch would."""
        dead = self.cluster_size < self.threshold  # (K,)
        n_dead = int(dead.sum())
        if n_dead:
            synced = distributed()
            if synced:
                parts = [torch.empty_like(rows) for _ in range(torch.distributed.get_world_size())]
                torch.distributed.all_gather(parts, rows.contiguous())
                rows = torch.cat(parts)  # (world * N, D), the global batch in rank order
            new = torch.empty(n_dead, rows.shape[1], dtype=rows.dtype)  # (n_dead, D)
            if not synced or torch.distributed.get_rank() == 0:
                new = rows[torch.randint(0, rows.shape[0], (n_dead,), generator=self.generator)]
            if synced:
                torch.distributed.broadcast(new, src=0)
            self.codebook[dead] = new
            self.embed_sum[dead] = new * self.cluster_size[dead, None]  # keep e_k = m_k / N_k
        return dead

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        out = super().forward(z_e)  # quantise and EMA-update
        if self.training:
            self.restart_dead_codes(z_e.detach().movedim(1, -1).reshape(-1, self.dim))
        return out


def _down(ch_in: int, ch: int, hop: int) -> nn.Sequential:
    n = int(math.log2(hop))
    if 2**n != hop:
        raise ValueError("hop lengths must be powers of two")
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv1d(ch_in if i == 0 else ch, ch, 4, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


def _up(ch: int, ch_out: int, hop: int) -> nn.Sequential:
    n = int(math.log2(hop))
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.ReLU(), nn.ConvTranspose1d(ch, ch_out if i == n - 1 else ch, 4, stride=2, padding=1)]
    return nn.Sequential(*layers)


class VQVAELevel(nn.Module):
    """One level: waveform (B, 1, T) -> codes (B, T / hop) -> waveform (B, 1, T)."""

    def __init__(
        self,
        hop: int,
        width: int,
        dim: int,
        num_codes: int,
        decay: float,
        threshold: float,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.hop = hop
        self.encoder = nn.Sequential(_down(1, width, hop), nn.Conv1d(width, dim, 3, padding=1))
        self.quantizer = RestartingQuantizer(num_codes, dim, decay, threshold, generator=generator)
        self.decoder = nn.Sequential(nn.Conv1d(dim, width, 3, padding=1), _up(width, 1, hop))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantizer(self.encoder(x))  # z_q (B, dim, T / hop)
        return self.decoder(q.z_q), q


class JukeboxVQVAE(nn.Module):
    """Independent VQ-VAE levels, bottom to top, with hops e.g. (8, 32, 128)."""

    def __init__(
        self,
        hops: tuple[int, ...] = (8, 32, 128),
        width: int = 8,
        dim: int = 8,
        num_codes: int = 32,
        decay: float = 0.99,
        threshold: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.hops = tuple(hops)
        self.levels = nn.ModuleList(VQVAELevel(h, width, dim, num_codes, decay, threshold, generator) for h in hops)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, T) -> [codes (B, T / h_l) for each level]."""
        return [lvl.quantizer(lvl.encoder(x)).indices for lvl in self.levels]

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, QuantizerOutput]]:
        return [lvl(x) for lvl in self.levels]


class UpsamplerConditioner(nn.Module):
    """Upper-level codes (B, T_up) -> conditioning (B, T_up * ratio, dim), c_t from z_up[t // ratio]."""

    def __init__(self, num_codes: int, dim: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.embed = nn.Embedding(num_codes, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, upper: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(upper).repeat_interleave(self.ratio, dim=1))  # (B, T_low, dim)


class UpsamplerPrior(nn.Module):
    """p(z_low | z_up): a causal attention block over z_low with time-aligned conditioning."""

    def __init__(self, num_codes: int, upper_codes: int, ratio: int, max_len: int, dim: int = 32, n_heads: int = 4):
        super().__init__()
        self.num_codes = num_codes
        self.tok = nn.Embedding(num_codes + 1, dim)  # last id = start token
        self.register_buffer("pos", sinusoidal_positions(max_len, dim))
        self.cond = UpsamplerConditioner(upper_codes, dim, ratio)
        self.block = TransformerBlock(dim, n_heads)  # the survey's one layer (attention.py)
        self.head = nn.Linear(dim, num_codes)

    def forward(self, low: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """low (B, T) and upper (B, T / ratio) -> logits (B, T, K); logits[:, t] predicts low[:, t]."""
        b, t = low.shape
        start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=low.device)
        inp = torch.cat([start, low[:, :-1]], dim=1)  # shifted right
        h = self.tok(inp) + self.pos[:t] + self.cond(upper)  # (B, T, dim)
        h = self.block(h, mask=causal_mask(t, low.device))  # (B, T, dim)
        return self.head(h)

    def loss(self, low: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        logits = self(low, upper)
        return F.cross_entropy(logits.reshape(-1, self.num_codes), low.reshape(-1))
