"""Video LDM: temporal layers interleaved with a frozen image LDM's spatial layers, mixed by alpha.

Paper and note: Align your Latents, Blattmann, Rombach, Ling, Dockhorn, Kim, Fidler & Kreis 2023
(papers/blattmann2023align.md). Builds on the image LDM of reference_impls/latent_diffusion.py
(papers/rombach2022high.md), whose ResBlock is the spatial layer here.

Equations implemented (Align your Latents, Sec. 3.1):
    spatial layers   l_phi^i see a video z in R^{B x T x C x H x W} as B*T independent images:
                     z -> rearrange(z, 'b t c h w -> (b t) c h w')
    temporal layers  l_phi^i see 'b c t h w': temporal self-attention over the T frames at each
                     spatial position (with sinusoidal frame positions), or a residual Conv3d whose
                     kernel spans time only
    mixing           z' = alpha_phi^i z + (1 - alpha_phi^i) z'',  z = spatial output,
                     z'' = temporal layer output, alpha = sigmoid(learned logit) in [0, 1]
    training         the image weights theta stay frozen; only phi (temporal layers and alphas)
                     is optimised with the image model's denoising loss on encoded videos
                     (ddpm.eps_loss on (B, T, C, h, w) latents)

With every alpha = 1 the video model is exactly the image model applied frame by frame.

Notation (code -> paper):
    image_model        the pre-trained image backbone, parameters theta
    temporal, blends   the temporal layers l_phi^i and their alpha_phi^i
    mix_logit          logit of alpha_phi^i
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import MultiHeadAttention, sinusoidal_embedding, sinusoidal_positions
from reference_impls.latent_diffusion import ResBlock


class ImageDenoiser(nn.Module):
    """A tiny image eps_theta(z_t, t): stem conv, a stack of spatial ResBlocks, output conv."""

    def __init__(self, channels: int = 4, ch: int = 16, depth: int = 2, num_steps: int = 1000):
        super().__init__()
        self.ch, self.num_steps = ch, num_steps
        self.temb = nn.Sequential(nn.Linear(ch, 4 * ch), nn.SiLU(), nn.Linear(4 * ch, 4 * ch))
        self.inp = nn.Conv2d(channels, ch, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(ch, 4 * ch) for _ in range(depth))
        self.out = nn.Sequential(nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        return self.temb(sinusoidal_embedding(t, self.ch))  # (B, 4 ch)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t (N, C, h, w), t (N,) -> eps (N, C, h, w)."""
        temb, h = self.embed_time(t), self.inp(z_t)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)


class TemporalAttention(nn.Module):
    """Self-attention across frames, independently at every spatial position: (B, C, T, H, W)."""

    def __init__(self, ch: int, n_heads: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.attn = MultiHeadAttention(ch, n_heads)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = z.shape
        seq = z.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)  # (B h w, T, C)
        seq = seq + sinusoidal_positions(t, c).to(z)  # frame order matters
        seq = seq + self.attn(self.norm(seq))
        return seq.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)  # (B, C, T, H, W)


class TemporalConv(nn.Module):
    """Residual 3D convolution with a (3, 1, 1) kernel: mixes neighbouring frames only."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = nn.GroupNorm(4, ch)
        self.conv = nn.Conv3d(ch, ch, kernel_size=(3, 1, 1), padding=(1, 0, 0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.conv(F.silu(self.norm(z)))  # (B, C, T, H, W)


class AlphaBlend(nn.Module):
    """z' = alpha z_spatial + (1 - alpha) z_temporal with alpha = sigmoid(mix_logit)."""

    def __init__(self, init_logit: float = 0.0):
        super().__init__()
        self.mix_logit = nn.Parameter(torch.tensor(init_logit))

    def forward(self, z_spatial: torch.Tensor, z_temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_logit)
        return alpha * z_spatial + (1 - alpha) * z_temporal


class VideoDenoiser(nn.Module):
    """Turns a pre-trained ImageDenoiser into eps_theta,phi over (B, T, C, h, w) video latents."""

    def __init__(self, image_model: ImageDenoiser, temporal: str = "attention", init_logit: float = 2.0):
        super().__init__()
        self.image_model = image_model.requires_grad_(False)  # theta: frozen
        ch = image_model.ch
        make = TemporalAttention if temporal == "attention" else TemporalConv
        self.temporal = nn.ModuleList(make(ch) for _ in image_model.blocks)  # phi
        self.blends = nn.ModuleList(AlphaBlend(init_logit) for _ in image_model.blocks)

    def temporal_parameters(self) -> list[nn.Parameter]:
        return list(self.temporal.parameters()) + list(self.blends.parameters())

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t (B, T, C, h, w), t (B,) -> eps (B, T, C, h, w). One noise level per video."""
        b, n_frames = z_t.shape[:2]
        im = self.image_model
        frames = z_t.flatten(0, 1)  # (B T, C, h, w): the spatial layers see a batch of images
        temb = im.embed_time(t.repeat_interleave(n_frames))  # (B T, 4 ch)
        h = im.inp(frames)
        for block, temporal, blend in zip(im.blocks, self.temporal, self.blends, strict=True):
            h = block(h, temb)  # spatial layer, (B T, ch, h, w)
            video = h.unflatten(0, (b, n_frames)).transpose(1, 2)  # (B, ch, T, h, w)
            mixed = blend(video, temporal(video))
            h = mixed.transpose(1, 2).flatten(0, 1)  # back to (B T, ch, h, w)
        return im.out(h).unflatten(0, (b, n_frames))
