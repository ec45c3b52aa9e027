"""Phenaki: a video tokenizer causal in time (C-ViViT) and MaskGIT decoding of its tokens.

Papers and notes:
    - Phenaki, Villegas et al. 2023 (papers/villegas2023phenaki.md): the C-ViViT encoder
      (first frame patched on its own, later frames in spatio-temporal tubes, a spatial
      transformer then a transformer causal in time, vector quantisation), its decoder
      (the same stacks in reverse order), and text-conditioned masked token generation, with
      continuation of a video from the tokens of its last frames.

Equations and rules implemented:
    patches        first frame: P_0 = patches of size (p_h, p_w); frames 1..T-1 in groups of t_p:
                   P_k = tubes of size (t_p, p_h, p_w), so T = 1 + k t_p frames give 1 + k time slots
    encoder        z = TemporalCausal(Spatial(Linear(P)))   slot k attends to slots j <= k only
    quantiser      y = argmin_j ||z - e_j||  (reference_impls.vq.VectorQuantizer)
    consequence    tokens of slot k depend only on frames 0 .. k t_p, so the tokens of the
                   first 1 + k t_p frames are a prefix of the tokens of the whole video
    generation     MaskGIT decoding (reference_impls.maskgit.decode) of the (slots x h x w)
                   token grid with a text-conditioned bidirectional transformer
                   (reference_impls.muse.MuseTransformer); known prefix slots stay fixed.

Notation (code -> paper):
    video        x, (B, C, T, H, W)          tp, (ph, pw)   temporal and spatial patch sizes
    slots        t_z = 1 + (T - 1) / t_p      grid           h x w = (H / p_h) x (W / p_w)
    text_emb     pre-computed text embeddings (T5X in the paper; any (B, L, E) tensor here)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions
from reference_impls.maskgit import decode
from reference_impls.muse import MuseTransformer, guided_logits
from reference_impls.vq import VectorQuantizer


class SpaceTimeStack(nn.Module):
    """Blocks over (B, T', S, D): spatial blocks attend within a time slot, temporal blocks
    attend along time at each spatial position with a causal mask. order: "st" or "ts"."""

    def __init__(self, dim: int, n_heads: int, depth: int, order: str = "st"):
        super().__init__()
        self.order = order
        self.spatial = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.temporal = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))

    def run_spatial(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, d = x.shape
        h = x.reshape(b * t, s, d)  # (B T', S, D)
        for blk in self.spatial:
            h = blk(h)
        return h.reshape(b, t, s, d)

    def run_temporal(self, x: torch.Tensor) -> torch.Tensor:
        b, t, s, d = x.shape
        h = x.transpose(1, 2).reshape(b * s, t, d)  # (B S, T', D)
        mask = causal_mask(t, x.device)  # slot k sees slots j <= k
        for blk in self.temporal:
            h = blk(h, mask=mask)
        return h.reshape(b, s, t, d).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "st":
            return self.run_temporal(self.run_spatial(x))
        return self.run_spatial(self.run_temporal(x))


class CausalVideoTokenizer(nn.Module):
    """C-ViViT in miniature: video (B, C, 1 + k t_p, H, W) <-> tokens (B, 1 + k, H/p_h, W/p_w)."""

    def __init__(
        self,
        channels: int = 3,
        size: tuple[int, int] = (16, 16),
        patch: tuple[int, int] = (4, 4),
        tp: int = 2,
        dim: int = 32,
        num_codes: int = 64,
        depth: int = 1,
        n_heads: int = 4,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.c, self.tp, (self.ph, self.pw) = channels, tp, patch
        self.h, self.w = size[0] // patch[0], size[1] // patch[1]
        first, rest = channels * self.ph * self.pw, channels * tp * self.ph * self.pw
        self.first_in, self.rest_in = nn.Linear(first, dim), nn.Linear(rest, dim)
        self.first_out, self.rest_out = nn.Linear(dim, first), nn.Linear(dim, rest)
        self.space_pos = nn.Parameter(0.02 * torch.randn(self.h * self.w, dim))
        self.encoder = SpaceTimeStack(dim, n_heads, depth, order="st")
        self.decoder = SpaceTimeStack(dim, n_heads, depth, order="ts")
        self.quantizer = VectorQuantizer(num_codes, dim, generator=generator)

    def patchify(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T, H, W) -> first-frame patches (B, 1, S, C ph pw), tubes (B, k, S, C tp ph pw)."""
        b, c, t, hh, ww = video.shape
        if (t - 1) % self.tp:
            raise ValueError(f"need 1 + k * {self.tp} frames, got {t}")
        k = (t - 1) // self.tp
        f0 = video[:, :, :1].reshape(b, c, 1, self.h, self.ph, self.w, self.pw)
        f0 = f0.permute(0, 2, 3, 5, 1, 4, 6).reshape(b, 1, self.h * self.w, -1)
        r = video[:, :, 1:].reshape(b, c, k, self.tp, self.h, self.ph, self.w, self.pw)
        r = r.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, k, self.h * self.w, c * self.tp * self.ph * self.pw)
        return f0, r

    def unpatchify(self, f0: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        b, k = r.shape[0], r.shape[1]
        c, h, w, ph, pw, tp = self.c, self.h, self.w, self.ph, self.pw, self.tp
        first = f0.reshape(b, 1, h, w, c, ph, pw).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, c, 1, h * ph, w * pw)
        rest = (
            r.reshape(b, k, h, w, c, tp, ph, pw).permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c, k * tp, h * ph, w * pw)
        )
        return torch.cat([first, rest], dim=2)  # (B, C, 1 + k tp, H, W)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Continuous latents z (B, T', S, D) before quantisation."""
        f0, r = self.patchify(video)
        x = torch.cat([self.first_in(f0), self.rest_in(r)], dim=1)  # (B, T', S, D)
        t = x.shape[1]
        time_pos = sinusoidal_positions(t, x.shape[-1]).to(x)  # absolute slot index: prefix-stable
        x = x + self.space_pos[None, None] + time_pos[None, :, None]
        return self.encoder(x)

    def tokenize(self, video: torch.Tensor):
        """Returns (indices (B, T', h, w), quantizer output)."""
        z = self.encode(video)  # (B, T', S, D)
        b, t, s, d = z.shape
        out = self.quantizer(z.permute(0, 3, 1, 2).reshape(b, d, t, self.h, self.w))  # (B, D, T', h, w)
        return out.indices, out

    def detokenize_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised map (B, D, T', h, w) -> video (B, C, 1 + (T'-1) tp, H, W)."""
        b, d, t = z_q.shape[:3]
        x = z_q.reshape(b, d, t, self.h * self.w).permute(0, 2, 3, 1)  # (B, T', S, D)
        x = x + self.space_pos[None, None] + sinusoidal_positions(t, d).to(x)[None, :, None]
        x = self.decoder(x)
        return self.unpatchify(self.first_out(x[:, :1]), self.rest_out(x[:, 1:]))

    def detokenize(self, indices: torch.Tensor) -> torch.Tensor:
        return self.detokenize_latents(self.quantizer.lookup(indices))


def generate_video_tokens(
    model: MuseTransformer,
    text_emb: torch.Tensor,
    grid: tuple[int, int, int],
    steps: int = 12,
    prefix: torch.Tensor | None = None,
    scale: float = 0.0,
    generator: torch.Generator | None = None,
    **kwargs,
) -> torch.Tensor:
    """MaskGIT decoding of a (T', h, w) token grid from text; prefix (B, T_p, h, w) tokens stay fixed
    (Phenaki continues a video from the re-encoded tokens of its last frames). Returns (B, T', h, w)."""
    b = text_emb.shape[0]
    t, h, w = grid
    n = t * h * w
    tokens = torch.full((b, n), model.mask_id, dtype=torch.long)
    unknown = torch.ones(b, n, dtype=torch.bool)
    if prefix is not None:
        p = prefix.reshape(b, -1)
        tokens[:, : p.shape[1]] = p
        unknown[:, : p.shape[1]] = False

    def fn(x: torch.Tensor, step: int) -> torch.Tensor:
        return guided_logits(model, x, text_emb, scale)

    out = decode(fn, tokens, unknown, model.mask_id, steps, generator, **kwargs)
    return out.reshape(b, t, h, w)
