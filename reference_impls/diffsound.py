"""Diffsound: text-to-sound generation with a discrete diffusion model over mel-spectrogram tokens.

Paper and note: Diffsound, Yang et al. 2023 (papers/yang2023diffsound.md). The pipeline is
text encoder -> token decoder -> mel VQ-VAE decoder -> vocoder. The token decoder is a
non-autoregressive VQ-Diffusion-style denoiser: it reads every mel token at once and predicts
the clean tokens, conditioned on the text through cross-attention.

What is reused, not copied:
    - the mask-and-replace transitions, posterior, hybrid loss and sampler: reference_impls/discrete_diffusion.py
      (papers/gu2022vector.md, papers/austin2021structured.md);
    - the codebook lookup: reference_impls/vq.py (VectorQuantizer);
    - the transformer block (full self-attention plus cross-attention): reference_impls/attention.py
      (TransformerBlock).

Equations (beyond those of discrete_diffusion.py):
    tokens      z = VQ(E(mel)),  mel (B, 1, F, L) -> z (B, F / 2^d, L / 2^d) for d stride-2 convolutions
    denoiser    p~(z_0 | z_t, y) = softmax(f_theta(z_t, t, Enc(y)))     y: text tokens
    loss        L = L_vb + lambda * CE  (discrete_diffusion.hybrid_loss), VQ-VAE frozen
    generation  z_T -> ... -> z_0 with p(z_{t-1} | z_t, y) = sum_{z_0} q(z_{t-1} | z_t, z_0) p~(z_0 | z_t, y),
                mel = D(lookup(z_0)); the vocoder (mel -> waveform) is left out.

Notation (code -> paper):
    mel          mel-spectrogram (F mel bins x L frames)    num_down    number of stride-2 layers, d
    tokens       mel tokens (codebook indices)              text        caption tokens y
    num_codes    codebook size K                            schedule    alpha_t, beta_t, gamma_t (VQ-Diffusion)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from reference_impls.attention import TransformerBlock
from reference_impls.discrete_diffusion import (
    DiscreteSchedule,
    Samples,
    hybrid_loss,
    mask_and_replace_schedule,
    sample,
    vq_diffusion_cumulative,
)
from reference_impls.vq import VectorQuantizer


def diffsound_schedule(num_steps: int, num_codes: int) -> DiscreteSchedule:
    """The VQ-Diffusion mask-and-replace chain over num_codes mel tokens plus [MASK]."""
    return mask_and_replace_schedule(*vq_diffusion_cumulative(num_steps), num_codes)


class MelVQVAE(nn.Module):
    """A small mel-spectrogram VQ-VAE: num_down stride-2 conv layers, a codebook, mirrored decoder."""

    def __init__(
        self,
        num_codes: int = 32,
        code_dim: int = 16,
        hidden: int = 32,
        num_down: int = 2,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_down = num_down
        enc, c = [], 1
        for _ in range(num_down):
            enc += [nn.Conv2d(c, hidden, 4, stride=2, padding=1), nn.ReLU()]
            c = hidden
        self.encoder = nn.Sequential(*enc, nn.Conv2d(hidden, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, generator=generator)
        dec, c = [nn.Conv2d(code_dim, hidden, 1)], hidden
        for i in range(num_down):
            dec += [nn.ReLU(), nn.ConvTranspose2d(hidden, hidden if i < num_down - 1 else 1, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def token_grid(self, n_mels: int, frames: int) -> tuple[int, int]:
        """The token grid the strides give: (F / 2^d, L / 2^d)."""
        f = 2**self.num_down
        return n_mels // f, frames // f

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, F, L) -> tokens (B, F / 2^d, L / 2^d) int64."""
        return self.quantizer(self.encoder(mel)).indices

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, h, w) -> mel (B, 1, h 2^d, w 2^d)."""
        return self.decoder(self.quantizer.lookup(tokens))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (B, 1, F, L) and the VQ loss (the first-stage training signal)."""
        q = self.quantizer(self.encoder(mel))
        return self.decoder(q.z_q), q.loss


class TextEncoder(nn.Module):
    """Caption tokens (B, M) -> features (B, M, D): embeddings plus one bidirectional block."""

    def __init__(self, vocab_size: int, dim: int, n_heads: int = 2, max_len: int = 32):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.block = TransformerBlock(dim, n_heads)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.tok(text) + self.pos(torch.arange(text.shape[1]))  # (B, M, D)
        return self.block(x)


class TokenDenoiser(nn.Module):
    """The Diffsound token decoder: p~(z_0 | z_t, t, y) for every mel token at once.

    forward(z_t (B, h, w) in [0, K] with K = [MASK], t (B,), text (B, M)) -> logits (B, h, w, K).
    Self-attention over the mel tokens is unmasked (bidirectional); cross-attention reads the text.
    """

    def __init__(
        self,
        num_codes: int,
        grid: tuple[int, int],
        num_steps: int,
        text_vocab: int,
        dim: int = 32,
        n_layers: int = 2,
        n_heads: int = 2,
    ):
        super().__init__()
        self.num_codes, self.grid = num_codes, grid
        self.tok = nn.Embedding(num_codes + 1, dim)  # K codes + [MASK]
        self.pos = nn.Embedding(grid[0] * grid[1], dim)
        self.time = nn.Embedding(num_steps + 1, dim)
        self.text_encoder = TextEncoder(text_vocab, dim, n_heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, cross_attention=True) for _ in range(n_layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    def forward(self, zt: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, h, w = zt.shape
        flat = zt.reshape(b, h * w)  # (B, N) raster order of the (mel bin, frame) grid
        x = self.tok(flat) + self.pos(torch.arange(h * w)) + self.time(t)[:, None]  # (B, N, D)
        context = self.text_encoder(text)  # (B, M, D)
        for block in self.blocks:
            x = block(x, mask=None, context=context)
        return self.head(self.ln(x)).view(b, h, w, self.num_codes)  # (B, h, w, K)


TextX0Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (z_t, t, text) -> logits


def loss(
    vqvae: MelVQVAE,
    denoiser: TextX0Model,
    schedule: DiscreteSchedule,
    mel: torch.Tensor,
    text: torch.Tensor,
    lam: float = 5e-4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Second-stage loss: tokens of the frozen VQ-VAE, then discrete_diffusion.hybrid_loss conditioned on text."""
    with torch.no_grad():
        tokens = vqvae.encode(mel)  # (B, h, w)
    total, _, _ = hybrid_loss(schedule, lambda zt, t: denoiser(zt, t, text), tokens, lam=lam, generator=generator)
    return total


@torch.no_grad()
def generate(
    vqvae: MelVQVAE,
    denoiser: TextX0Model,
    schedule: DiscreteSchedule,
    text: torch.Tensor,
    grid: tuple[int, int],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, Samples]:
    """Text (B, M) -> mel (B, 1, F, L) through discrete_diffusion.sample; also returns the Samples record."""
    out = sample(lambda zt, t: denoiser(zt, t, text), schedule, (text.shape[0], *grid), generator)
    return vqvae.decode(out.tokens), out
