"""GLIDE: a text-conditional diffusion denoiser, with classifier-free guidance and CLIP guidance.

Paper and note: GLIDE, Nichol et al. 2022 (papers/nichol2022glide.md), Sec. 2.3-2.4 and 3. The
denoiser is also the decoder of unCLIP (reference_impls/unclip.py, papers/ramesh2022hierarchical.md).
Diffusion itself (schedule, forward process, posterior, sampler) is reused from ddpm.py, the
guidance formula from guidance.py and the contrastive model from clip.py.

Text conditioning (Sec. 3): a transformer encodes the caption into K token features; the final
token's feature replaces the class embedding (added to the timestep embedding), and all K token
features, projected to every attention layer's width, are concatenated to that layer's
attention context, so image positions attend to [text tokens ; image positions].

Equations implemented:
    classifier-free guidance (Sec. 2.3)
        eps~(x_t | c) = eps(x_t | null) + s (eps(x_t | c) - eps(x_t | null))      s = 1 -> eps(x_t | c)
        training: the caption is replaced by the empty caption with probability p_uncond
    CLIP guidance (Sec. 2.4), with a CLIP image encoder f that sees noised images x_t
        mu^(x_t | c) = mu(x_t | c) + s Sigma(x_t | c) grad_{x_t} (f(x_t, t) . g(c))      s = 0 -> mu

Notation (code -> paper):
    text            caption c (tokens)           text_emb   g(c), CLIP text embedding
    image_encoder   f(x_t, t), noised CLIP        scale      s (guidance scale)
    mean, variance  mu, Sigma of p(x_{t-1} | x_t)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from reference_impls import ddpm
from reference_impls.attention import MultiHeadAttention, TransformerBlock, sinusoidal_embedding, sinusoidal_positions
from reference_impls.guidance import drop_condition, guide_s


class TextEncoder(nn.Module):
    """Tiny transformer over caption tokens: (B, K) -> token features (B, K, D) and final-token feature (B, D)."""

    def __init__(self, vocab: int, max_len: int, dim: int, n_heads: int = 4, n_layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.register_buffer("pos", sinusoidal_positions(max_len, dim), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]  # (B, K, D)
        for block in self.blocks:
            h = block(h)
        h = self.ln(h)
        return h, h[:, -1]  # (B, K, D), (B, D)


class ContextAttentionBlock(nn.Module):
    """Self-attention of image positions whose keys/values also include extra context tokens."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.ln, self.ln_ctx = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, n_heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = self.ln(h)  # (B, P, D)
        kv = torch.cat([self.ln_ctx(ctx), x], dim=1)  # (B, K + P, D): text tokens then image positions
        h = h + self.attn(x, context=kv)
        return h + self.mlp(self.ln2(h))


class TextConditionedDenoiser(nn.Module):
    """eps_theta(x_t, t, caption) for images (B, C, H, W) treated as H * W tokens.

    `extra_ctx` (B, E, D) and `extra_emb` (B, D) let a caller add more context tokens and more to the
    timestep embedding (unCLIP's decoder uses them for the CLIP image embedding).
    """

    def __init__(
        self,
        channels: int,
        size: int,
        vocab: int,
        text_len: int,
        dim: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        pad_id: int = 0,
    ):
        super().__init__()
        self.dim, self.pad_id = dim, pad_id
        self.text = TextEncoder(vocab, text_len, dim, n_heads)
        self.inp = nn.Linear(channels, dim)
        self.register_buffer("pos", sinusoidal_positions(size * size, dim), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_proj = nn.Linear(dim, dim)  # final text token -> in place of a class embedding
        self.ctx_proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))  # per-layer text projection
        self.blocks = nn.ModuleList(ContextAttentionBlock(dim, n_heads) for _ in range(n_layers))
        self.out = nn.Linear(dim, channels)

    def null_text(self, text: torch.Tensor) -> torch.Tensor:
        return torch.full_like(text, self.pad_id)  # the empty caption

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        extra_ctx: torch.Tensor | None = None,
        extra_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        tokens, final = self.text(text)  # (B, K, D), (B, D)
        emb = self.time_mlp(sinusoidal_embedding(t, self.dim)) + self.class_proj(final)  # (B, D)
        if extra_emb is not None:
            emb = emb + extra_emb
        h = self.inp(x.flatten(2).transpose(1, 2)) + self.pos + emb[:, None]  # (B, P, D), P = H * W
        for proj, block in zip(self.ctx_proj, self.blocks, strict=True):
            ctx = proj(tokens)  # (B, K, D)
            if extra_ctx is not None:
                ctx = torch.cat([ctx, extra_ctx], dim=1)  # (B, K + E, D)
            h = block(h, ctx)
        return self.out(h).transpose(1, 2).reshape(b, c, hgt, wid)  # (B, C, H, W)

    def loss(
        self,
        s: ddpm.Schedule,
        x0: torch.Tensor,
        text: torch.Tensor,
        p_uncond: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDPM's L_simple with the caption replaced by the empty caption with probability p_uncond."""
        text, _ = drop_condition(text, torch.full_like(text[0], self.pad_id), p_uncond, generator)
        return ddpm.eps_loss(s, lambda xt, t: self(xt, t, text), x0, generator)


def classifier_free_eps(
    model: TextConditionedDenoiser, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, scale: float
) -> torch.Tensor:
    """eps(x_t | null) + s (eps(x_t | c) - eps(x_t | null)): (B, C, H, W)."""
    return guide_s(model(x, t, text), model(x, t, model.null_text(text)), scale)


ImageEncoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,)) -> (B, E)


def clip_guided_mean(
    mean: torch.Tensor,
    variance: torch.Tensor,
    x: torch.Tensor,
    t: torch.Tensor,
    image_encoder: ImageEncoder,
    text_emb: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Sec. 2.4: mu + s Sigma grad_{x_t}(f(x_t, t) . g(c)). mean, x (B, ...); variance broadcastable;
    text_emb (B, E)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        score = (image_encoder(x, t) * text_emb).sum()  # sum over the batch of f(x_t, t) . g(c)
        grad = torch.autograd.grad(score, x)[0]  # (B, ...)
    return mean + scale * variance * grad


@torch.no_grad()
def sample(
    s: ddpm.Schedule,
    model: TextConditionedDenoiser,
    text: torch.Tensor,
    shape: tuple[int, ...],
    cfg_scale: float = 1.0,
    image_encoder: ImageEncoder | None = None,
    text_emb: torch.Tensor | None = None,
    clip_scale: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Ancestral sampling (DDPM Algorithm 2, sigma^2 = beta~_t) with either or both guidances."""
    x = torch.randn(shape, generator=generator)  # (B, C, H, W)
    for i in reversed(range(s.num_steps)):
        t = torch.full((shape[0],), i, dtype=torch.long)
        mean = ddpm.p_mean(s, x, t, classifier_free_eps(model, x, t, text, cfg_scale))
        var = s.posterior_variance[i].to(x.dtype)
        if image_encoder is not None and clip_scale != 0:
            mean = clip_guided_mean(mean, var, x, t, image_encoder, text_emb, clip_scale)
        x = mean + var.sqrt() * torch.randn(shape, generator=generator) if i > 0 else mean
    return x
