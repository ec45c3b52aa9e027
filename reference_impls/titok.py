"""TiTok: a 1-D image tokenizer. K learned latent tokens read the image through a ViT and are quantised.

Paper and note:
    - TiTok, Yu et al. 2024, "An Image is Worth 32 Tokens for Reconstruction and Generation"
      (papers/yu2024image.md): Sec. 3 tokenization and de-tokenization.
    - Reused by GigaTok's semantic regulariser (reference_impls/gigatok.py, papers/xiong2025gigatok.md),
      which reads an intermediate layer of this decoder.
    The quantiser is reference_impls/vq.py (l2-normalised codes, looked up by cosine, as ViT-VQGAN);
    the transformer layer and the sinusoids are reference_impls/attention.py.

Equations implemented (notation of the paper):
    tokenization     Z_1D = Enc(P (+) L)          P: (H/f * W/f) patch embeddings, L: K latent tokens;
                                                  only the K latent outputs are kept
    quantisation     q_k = argmin_j || l2(z_k) - l2(e_j) ||,  z_k in R^c   (c = token_size, small)
    de-tokenization  I_hat = Dec(Quant(Z_1D) (+) M) M: (H/f * W/f) copies of one mask token, one per
                                                  output patch; the decoder's outputs at M become pixels
    (+) is concatenation along the sequence. K is a free hyper-parameter, not H W / f^2: the number of
    tokens does not depend on the image size, and the decoder sees the image only through the K codes.

Notation (code -> paper):
    num_latent_tokens  K            patch_size   f             token_dim   token size c (12 in TiTok-L-32)
    latent_tokens      L            mask_token   M's shared row dim         ViT width D

Positions: patches get 2-D sinusoidal positions (half the width per axis, attention.sinusoidal_embedding)
so one model runs on any grid; the released models learn a table for one grid (256 px, f = 16).
The projection of each latent output to c dims is per token (a Linear on the last axis); see the
note's Pitfalls for the released code's legacy reshape, which mixes tokens at this step.

Left out: the two-stage recipe that first regresses the codes of a frozen MaskGIT-VQGAN ("proxy
codes") and then fine-tunes the decoder to pixels, the perceptual and GAN losses, the class token,
and the MaskGIT-style generator (reference_impls/maskgit.py models such 1-D sequences unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from reference_impls.attention import TransformerBlock, sinusoidal_embedding
from reference_impls.vq import QuantizerOutput, VectorQuantizer


def grid_positions(h: int, w: int, dim: int) -> torch.Tensor:
    """(h*w, dim) 2-D sinusoidal positions, raster order: row sinusoid in the first half, column in the second."""
    rows = torch.arange(h).repeat_interleave(w)  # (h*w,)
    cols = torch.arange(w).repeat(h)  # (h*w,)
    return torch.cat([sinusoidal_embedding(rows, dim // 2), sinusoidal_embedding(cols, dim // 2)], dim=-1)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, C * p * p) raster-ordered flattened patches."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch: int, channels: int = 3) -> torch.Tensor:
    """Inverse of patchify: (B, h*w, C*p*p) -> (B, C, h*p, w*p)."""
    b = patches.shape[0]
    h, w = grid
    x = patches.reshape(b, h, w, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, h * patch, w * patch)


class TiTokEncoder(nn.Module):
    """Enc(P (+) L): patches and K latent tokens through one ViT; returns the K latents projected to c dims."""

    def __init__(
        self,
        *,
        patch_size: int,
        dim: int,
        depth: int,
        n_heads: int,
        num_latent_tokens: int,
        token_dim: int,
        channels: int = 3,
    ):
        super().__init__()
        self.patch_size, self.dim = patch_size, dim
        self.patch_embed = nn.Linear(channels * patch_size * patch_size, dim)
        self.latent_tokens = nn.Parameter(dim**-0.5 * torch.randn(num_latent_tokens, dim))  # L
        self.latent_pos = nn.Parameter(dim**-0.5 * torch.randn(num_latent_tokens, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(dim)
        self.to_token = nn.Linear(dim, token_dim)  # per latent token: (B, K, D) -> (B, K, c)

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """The ViT outputs at the K latent slots, (B, K, D), before the projection."""
        b, _, h, w = images.shape
        grid = (h // self.patch_size, w // self.patch_size)
        p = self.patch_embed(patchify(images, self.patch_size)) + grid_positions(*grid, self.dim)  # (B, N, D)
        latents = (self.latent_tokens + self.latent_pos).expand(b, -1, -1)  # (B, K, D)
        x = torch.cat([p, latents], dim=1)  # P (+) L: (B, N + K, D)
        for block in self.blocks:
            x = block(x)  # no mask: every patch and latent sees all others
        return x[:, p.shape[1] :]  # keep only the latent slots: (B, K, D)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, K, D) -> (B, K, c): token k is a function of latent slot k alone."""
        return self.to_token(self.ln_post(hidden))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.hidden(images))  # Z_1D: (B, K, c)


class TiTokDecoder(nn.Module):
    """Dec(Quant(Z_1D) (+) M): one mask token per output patch reads the K codes; its outputs become pixels."""

    def __init__(
        self,
        *,
        patch_size: int,
        dim: int,
        depth: int,
        n_heads: int,
        num_latent_tokens: int,
        token_dim: int,
        channels: int = 3,
    ):
        super().__init__()
        self.patch_size, self.dim, self.channels = patch_size, dim, channels
        self.embed = nn.Linear(token_dim, dim)
        self.latent_pos = nn.Parameter(dim**-0.5 * torch.randn(num_latent_tokens, dim))
        self.mask_token = nn.Parameter(dim**-0.5 * torch.randn(dim))  # M's shared row
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(dim)
        self.to_pixels = nn.Linear(dim, channels * patch_size * patch_size)

    def forward(
        self, z_q: torch.Tensor, grid: tuple[int, int], hidden_at: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """z_q (B, K, c) quantised tokens and the output patch grid (h, w) -> images (B, C, h*f, w*f).

        hidden_at=l also returns the mask-token states after block l, (B, h*w, D) (GigaTok reads them).
        """
        b, n = z_q.shape[0], grid[0] * grid[1]
        masks = self.mask_token.expand(b, n, -1) + grid_positions(*grid, self.dim)  # M: (B, h*w, D)
        x = torch.cat([masks, self.embed(z_q) + self.latent_pos], dim=1)  # (B, h*w + K, D)
        inner = None
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i == hidden_at:
                inner = x[:, :n]
        images = unpatchify(self.to_pixels(self.ln_post(x[:, :n])), grid, self.patch_size, self.channels)
        return images if hidden_at is None else (images, inner)


@dataclass
class TiTokOutput:
    reconstruction: torch.Tensor  # (B, C, H, W)
    quantized: QuantizerOutput  # z_q (B, c, K) and indices (B, K)


class TiTok(nn.Module):
    """Encoder, l2-normalised VQ of each of the K latent tokens, decoder."""

    def __init__(
        self,
        *,
        num_latent_tokens: int = 8,
        codebook_size: int = 64,
        token_dim: int = 4,
        patch_size: int = 4,
        dim: int = 32,
        depth: int = 1,
        n_heads: int = 4,
        channels: int = 3,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        opts = {
            "patch_size": patch_size,
            "dim": dim,
            "depth": depth,
            "n_heads": n_heads,
            "num_latent_tokens": num_latent_tokens,
            "token_dim": token_dim,
            "channels": channels,
        }
        self.patch_size, self.num_latent_tokens = patch_size, num_latent_tokens
        self.encoder = TiTokEncoder(**opts)
        self.quantizer = VectorQuantizer(codebook_size, token_dim, beta=beta, l2_normalize=True, generator=generator)
        self.decoder = TiTokDecoder(**opts)

    def quantize(self, images: torch.Tensor) -> QuantizerOutput:
        return self.quantizer(self.encoder(images).transpose(1, 2))  # VQ over (B, c, K)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, K) code indices; K is fixed, whatever H and W."""
        return self.quantize(images).indices

    def decode_tokens(self, indices: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, K) indices -> images on an h x w patch grid; nothing but the codes is read."""
        return self.decoder(self.quantizer.lookup(indices).transpose(1, 2), grid)

    def forward(self, images: torch.Tensor) -> TiTokOutput:
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        q = self.quantize(images)
        return TiTokOutput(self.decoder(q.z_q.transpose(1, 2), grid), q)
