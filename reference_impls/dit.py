"""DiT: a transformer denoiser over latent patches, conditioned by adaLN-Zero.

Paper and note: Scalable Diffusion Models with Transformers, Peebles & Xie 2023
(papers/peebles2023scalable.md). Official code: facebookresearch/DiT (models.py, train.py,
sample.py). The diffusion itself (schedule, q_sample, eps loss, ancestral sampler) is DDPM's,
from reference_impls/ddpm.py; attention is attention.MultiHeadAttention.

Equations implemented:
    patchify      latent (C, H, W) -> T = (H / p)(W / p) tokens of size p * p * C (raster over patches)
    conditioning  c = emb(t) + emb(y)          (sinusoidal step embedding through an MLP; class table
                                                with one extra row for the null class of guidance)
    adaLN-Zero    (gamma_1, beta_1, alpha_1, gamma_2, beta_2, alpha_2) = Linear(SiLU(c)), Linear zero-initialised
                  x <- x + alpha_1 * Attn(LN(x) (1 + gamma_1) + beta_1)
                  x <- x + alpha_2 * MLP(LN(x) (1 + gamma_2) + beta_2)
                  alpha = 0 at initialisation, so every block starts as the identity
    final layer   LN(x) (1 + gamma) + beta -> Linear to p * p * C_out, all zero-initialised, then unpatchify
    loss          ddpm.eps_loss (L_simple) with eps_theta(x_t, t, y)
    guidance      eps~ = eps_u + s (eps_c - eps_u) (guidance.guide_s); the official forward_with_cfg
                  guides only the first 3 channels of a 4-channel latent (`channels=3`)

Notation (code -> paper / official code):
    shift, scale, gate    beta, gamma, alpha (shift_msa, scale_msa, gate_msa, ...)
    patch                 p                    dim   hidden_size      null_label   num_classes

Simplifications: the denoiser predicts the noise only (the official one also outputs a learned
variance, learn_sigma=True) and the fixed positions use attention.sinusoidal_embedding per axis.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls import ddpm
from reference_impls.attention import MultiHeadAttention, sinusoidal_embedding
from reference_impls.guidance import drop_condition, guide_s


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)(W/p), p*p*C): patches in raster order, each flattened as (row, col, channel)."""
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"latent {h}x{w} is not divisible by the patch size {p}")
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, H/p, W/p, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """Inverse of patchify: (B, T, p*p*C) -> (B, C, H, W) (models.py unpatchify, 'nhwpqc->nchpwq')."""
    b = tokens.shape[0]
    x = tokens.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, H/p, p, W/p, p)
    return x.reshape(b, c, h, w)


def grid_positions(gh: int, gw: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal positions (gh * gw, dim): half the channels for the column, half for the row."""
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.cat(
        [sinusoidal_embedding(cols.flatten(), dim // 2), sinusoidal_embedding(rows.flatten(), dim // 2)], dim=-1
    )


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) * (1 + scale) + shift, with shift and scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """One adaLN-Zero block: forward(x (B, T, D), c (B, D)) -> (B, T, D); the identity at initialisation."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, n_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[-1].weight)  # adaLN-Zero
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each (B, D)
        h = self.attn(modulate(self.norm1(x), shift1, scale1))  # (B, N, D)
        x = x + gate1[:, None] * h
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """eps_theta(x_t, t, y): latent (B, C, H, W), steps (B,), labels (B,) -> predicted noise (B, C, H, W)."""

    def __init__(
        self,
        *,
        input_size: int,
        patch: int,
        in_channels: int,
        dim: int,
        depth: int,
        n_heads: int,
        n_classes: int,
        freq_dim: int = 256,
    ):
        super().__init__()
        self.patch, self.channels, self.freq_dim, self.null_label = patch, in_channels, freq_dim, n_classes
        g = input_size // patch
        self.embed = nn.Linear(patch * patch * in_channels, dim)  # the stride-p conv of PatchEmbed, as a linear map
        self.register_buffer("pos", grid_positions(g, g, dim), persistent=False)  # (T, D), fixed
        self.t_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.y_emb = nn.Embedding(n_classes + 1, dim)  # the last row: the null class
        self.blocks = nn.ModuleList(DiTBlock(dim, n_heads) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, patch * patch * in_channels)
        for layer in (self.ada_out[-1], self.out):  # the final layer starts at zero too
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.embed(patchify(x, self.patch)) + self.pos  # (B, T, D)
        cond = self.t_mlp(sinusoidal_embedding(t, self.freq_dim)) + self.y_emb(y)  # (B, D)
        for block in self.blocks:
            tokens = block(tokens, cond)
        shift, scale = self.ada_out(cond).chunk(2, dim=-1)
        out = self.out(modulate(self.norm_out(tokens), shift, scale))  # (B, T, p*p*C)
        return unpatchify(out, self.patch, c, h, w)


def dit_loss(
    model: DiT,
    schedule: ddpm.Schedule,
    x0: torch.Tensor,
    labels: torch.Tensor,
    *,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_simple on latents x0 (B, C, H, W), the class replaced by the null class with probability p_uncond."""
    null = torch.tensor(model.null_label, device=labels.device)
    labels, _ = drop_condition(labels, null, p_uncond, generator)
    return ddpm.eps_loss(schedule, lambda x_t, t: model(x_t, t, labels), x0, generator=generator)


def guided_eps(
    model: DiT, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, *, scale: float, channels: int | None = None
) -> torch.Tensor:
    """eps_u + scale (eps_c - eps_u) on the first `channels` channels (all if None); the rest stay conditional."""
    b = x_t.shape[0]
    eps = model(x_t.repeat(2, 1, 1, 1), t.repeat(2), torch.cat([labels, torch.full_like(labels, model.null_label)]))
    cond, uncond = eps[:b], eps[b:]
    k = cond.shape[1] if channels is None else channels
    return torch.cat([guide_s(cond[:, :k], uncond[:, :k], scale), cond[:, k:]], dim=1)


@torch.no_grad()
def sample(
    model: DiT,
    schedule: ddpm.Schedule,
    labels: torch.Tensor,
    *,
    scale: float = 4.0,
    size: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM ancestral sampling of (B, C, size, size) latents with guided noise predictions."""

    def eps_model(x_t, t):
        return guided_eps(model, x_t, t, labels, scale=scale)

    return ddpm.p_sample_loop(schedule, eps_model, (labels.shape[0], model.channels, size, size), generator=generator)
