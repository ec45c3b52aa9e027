"""Muse: a masked token transformer cross-attending to frozen text embeddings, with guidance
on logits, negative prompts and a token super-resolution stage.

Papers and notes:
    - Muse, Chang et al. 2023 (papers/chang2023muse.md), Sec. 2: text conditioning by
      cross-attention to a frozen text encoder's embeddings (projected to the model width),
      variable masking rate, classifier-free guidance on logits (Eq. 1), negative prompting,
      and the super-resolution transformer that translates low-resolution tokens to
      high-resolution tokens.

Equations implemented:
    guidance (Muse Eq. 1)   l_g = (1 + t) l_c - t l_u        (reference_impls.guidance.guide_w,
                            w = t; t = 0 returns the conditional logits l_c)
    guidance schedule       t_k rises linearly over the decoding steps, from t_max / T at the
                            first step to t_max at the last
    negative prompt         l_u is replaced by the logits under the negative prompt
    condition dropout       the text is removed for a fraction p of training examples; a removed
                            text means no cross-attention at all (image self-attention only)
    super-resolution        low-res tokens -> self-attention encoder -> concatenated with the
                            projected text embeddings -> cross-attended by the masked
                            high-res tokens
    Masking during training and iterative decoding are those of MaskGIT
    (reference_impls.maskgit.training_mask / decode).

Notation (code -> paper):
    text_emb     the frozen T5-XXL embeddings (here: FrozenTextEncoder, a small random
                 stand-in; nothing is downloaded)
    scale        t, the guidance scale        cond / uncond    l_c / l_u
    low / high   base-model tokens (16 x 16) / super-resolution tokens (64 x 64) in the paper

Convention: `scale` is the w-form of guidance.py, so scale = 0 gives exactly the conditional
logits and scale = s - 1 equals the s-form with scale s.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls.attention import TransformerBlock
from reference_impls.guidance import drop_condition, guide_w
from reference_impls.maskgit import apply_mask, decode, masked_token_loss, training_mask


class FrozenTextEncoder(nn.Module):
    """A small stand-in for the frozen T5-XXL encoder: token ids (B, L) -> embeddings (B, L, E).

    Random weights, one bidirectional block, no gradients: it plays the role of a pretrained
    language model whose outputs the image transformer only reads.
    """

    def __init__(self, vocab: int = 100, dim: int = 32, max_len: int = 16, n_heads: int = 4):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(max_len, dim))
        self.block = TransformerBlock(dim, n_heads)
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.block(self.emb(ids) + self.pos[: ids.shape[1]])  # (B, L, E)


class MuseTransformer(nn.Module):
    """Base model: image tokens (B, N) with [MASK], text embeddings (B, L, E) -> logits (B, N, K).

    text_emb=None (or keep[b] False) removes the text for that example: no cross-attention.
    """

    def __init__(self, num_codes: int, n_tokens: int, text_dim: int, dim: int = 64, depth: int = 2, n_heads: int = 4):
        super().__init__()
        self.num_codes, self.mask_id = num_codes, num_codes
        self.tok = nn.Embedding(num_codes + 1, dim)
        self.pos = nn.Parameter(0.02 * torch.randn(n_tokens, dim))
        self.text_proj = nn.Linear(text_dim, dim)  # T5 width -> transformer width
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, cross_attention=True) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes)

    def forward(
        self, tokens: torch.Tensor, text_emb: torch.Tensor | None, keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.tok(tokens) + self.pos  # (B, N, D)
        ctx = None if text_emb is None else self.text_proj(text_emb)  # (B, L, D)
        for blk in self.blocks:
            x = blk(x, context=ctx, keep=keep)
        return self.head(self.ln(x))  # (B, N, K)


def guided_logits(
    model_fn, tokens: torch.Tensor, text_emb: torch.Tensor, scale: float, negative_emb: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 1: (1 + t) l_c - t l_u, with l_u under the negative prompt when one is given.

    model_fn(tokens, text_emb_or_None) -> logits. scale = 0 returns l_c without computing l_u.
    """
    cond = model_fn(tokens, text_emb)  # l_c
    if scale == 0:
        return cond
    uncond = model_fn(tokens, negative_emb)  # l_u: no text, or the negative prompt
    return guide_w(cond, uncond, scale)


def guidance_schedule(step: int, steps: int, max_scale: float) -> float:
    """Linearly increasing guidance: t_k = max_scale * (k + 1) / T for step k = 0..T-1."""
    return max_scale * (step + 1) / steps


def training_loss(
    model: MuseTransformer,
    tokens: torch.Tensor,
    text_emb: torch.Tensor,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Variable-rate masking (cosine), text dropped for a fraction p_uncond of the batch."""
    b, n = tokens.shape
    mask = training_mask(b, n, generator)  # (B, N)
    _, dropped = drop_condition(text_emb, torch.zeros_like(text_emb[0]), p_uncond, generator)
    logits = model(apply_mask(tokens, mask, model.mask_id), text_emb, keep=~dropped)
    return masked_token_loss(logits, tokens, mask)


def generate(
    model: MuseTransformer,
    text_emb: torch.Tensor,
    steps: int = 12,
    max_scale: float = 0.0,
    negative_emb: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **kwargs,
) -> torch.Tensor:
    """Text-to-token generation with MaskGIT decoding and the rising guidance schedule: (B, N)."""
    b, n = text_emb.shape[0], model.pos.shape[0]
    tokens = torch.full((b, n), model.mask_id, dtype=torch.long)
    unknown = torch.ones(b, n, dtype=torch.bool)

    def fn(x: torch.Tensor, step: int) -> torch.Tensor:
        return guided_logits(model, x, text_emb, guidance_schedule(step, steps, max_scale), negative_emb)

    return decode(fn, tokens, unknown, model.mask_id, steps, generator, **kwargs)


class MuseSuperRes(nn.Module):
    """Super-resolution transformer: high-res tokens (B, N_hi) conditioned on low-res tokens
    (B, N_lo) and text (B, L, E) -> logits over the high-res codebook (B, N_hi, K_hi).

    The low-res tokens go through `enc_depth` self-attention layers; their outputs, concatenated
    with the projected text embeddings, are the context every high-res block cross-attends to.
    """

    def __init__(
        self,
        num_codes_lo: int,
        n_lo: int,
        num_codes_hi: int,
        n_hi: int,
        text_dim: int,
        dim: int = 64,
        enc_depth: int = 1,
        depth: int = 2,
        n_heads: int = 4,
    ):
        super().__init__()
        self.mask_id = num_codes_hi
        self.lo_tok = nn.Embedding(num_codes_lo, dim)
        self.lo_pos = nn.Parameter(0.02 * torch.randn(n_lo, dim))
        self.lo_encoder = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(enc_depth))
        self.text_proj = nn.Linear(text_dim, dim)
        self.hi_tok = nn.Embedding(num_codes_hi + 1, dim)
        self.hi_pos = nn.Parameter(0.02 * torch.randn(n_hi, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, cross_attention=True) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_codes_hi)

    def context(self, low: torch.Tensor, text_emb: torch.Tensor | None) -> torch.Tensor:
        c = self.lo_tok(low) + self.lo_pos  # (B, N_lo, D)
        for blk in self.lo_encoder:
            c = blk(c)
        if text_emb is not None:
            c = torch.cat([c, self.text_proj(text_emb)], dim=1)  # (B, N_lo + L, D)
        return c

    def forward(self, high: torch.Tensor, low: torch.Tensor, text_emb: torch.Tensor | None) -> torch.Tensor:
        ctx = self.context(low, text_emb)
        x = self.hi_tok(high) + self.hi_pos  # (B, N_hi, D)
        for blk in self.blocks:
            x = blk(x, context=ctx)
        return self.head(self.ln(x))  # (B, N_hi, K_hi)


def super_resolve(
    model: MuseSuperRes,
    low: torch.Tensor,
    text_emb: torch.Tensor,
    steps: int = 8,
    max_scale: float = 0.0,
    generator: torch.Generator | None = None,
    **kwargs,
) -> torch.Tensor:
    """Generate high-res tokens (B, N_hi) for given low-res tokens; guidance drops the text only."""
    b, n = low.shape[0], model.hi_pos.shape[0]
    tokens = torch.full((b, n), model.mask_id, dtype=torch.long)
    unknown = torch.ones(b, n, dtype=torch.bool)

    def fn(x: torch.Tensor, step: int) -> torch.Tensor:
        scale = guidance_schedule(step, steps, max_scale)
        return guided_logits(lambda h, e: model(h, low, e), x, text_emb, scale)

    return decode(fn, tokens, unknown, model.mask_id, steps, generator, **kwargs)
