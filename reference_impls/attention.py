"""Multi-head scaled dot-product attention, causal masks and sinusoidal positions.

Papers and notes:
    - Transformer, Vaswani et al. 2017 (papers/vaswani2017attention.md): Eq. 1, the
      multi-head formula of Sec. 3.2.2, the decoder's causal masking (Sec. 3.2.3) and the
      sinusoidal positional encoding of Sec. 3.5.
    - Reused by the shared token prior (reference_impls/ar_prior.py, papers/ding2021cogview.md,
      papers/chen2020generative.md) and by NUWA's 3D Nearby Attention
      (reference_impls/nearby_attention.py, papers/wu2022nuwa.md).
    - TransformerBlock below is the one transformer layer of the survey's token models: causal
      (ar_prior, Parti, Make-A-Scene, ImageBART), bidirectional (MaskGIT, Muse, Phenaki,
      VQ-Diffusion's denoiser) or over continuous latents (unCLIP, symbolic music diffusion).

Equations implemented:
    Eq. 1        Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    Sec. 3.2.2   MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
                 head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    Sec. 3.2.3   causal masking: position i attends only to j <= i (illegal logits set to -inf)
    Sec. 3.5     PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),
                 PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model))

Notation (code -> paper):
    dim        d_model                 n_heads    h
    head_dim   d_k = d_v = d_model / h
    q, k, v    Q, K, V (per head)      out        W^O

Mask convention used everywhere in reference_impls: a boolean tensor broadcastable to
(..., N_q, N_k) where True means "may attend" and False means "blocked". A query row with no
allowed key would produce NaN; callers must always leave at least one key allowed.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn


def causal_mask(n: int, device: torch.device | None = None) -> torch.Tensor:
    """(n, n) bool, True on and below the diagonal: query i may attend to keys j <= i."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 1: softmax(q k^T / sqrt(d_k)) v.

    q: (..., N_q, d_k), k: (..., N_k, d_k), v: (..., N_k, d_v), mask: bool broadcastable to
    (..., N_q, N_k), True = allowed. Returns (..., N_q, d_v).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., N_q, N_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (..., N_q, d_v)


def sinusoidal_embedding(pos: torch.Tensor, d: int, base: float = 10000.0) -> torch.Tensor:
    """Sec. 3.5 at any positions: pos (...,) -> (..., d) with [2i] = sin(pos / base^(2i/d)), [2i+1] = cos(...).

    Also the diffusion-step embedding of every denoiser in the survey (pos = the step t). d must be even.
    """
    if d % 2:
        raise ValueError("a sinusoidal embedding needs an even dimension d")
    two_i = torch.arange(0, d, 2, dtype=torch.float64, device=pos.device)  # (d/2,)
    angle = pos.to(torch.float64)[..., None] / base ** (two_i / d)  # (..., d/2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2).float()  # (..., d), sin/cos interleaved


def sinusoidal_positions(n: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """Sec. 3.5: the (n, d) table of positions 0 .. n - 1."""
    return sinusoidal_embedding(torch.arange(n), d, base)


AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class MultiHeadAttention(nn.Module):
    """Sec. 3.2.2: h parallel heads of Eq. 1 on learned projections, concatenated and projected.

    forward(x, context=None, mask=None, past_kv=None) -> (out, (k, v))
        x:        (B, N, dim) queries (and keys/values for self-attention)
        context:  (B, M, dim) keys/values for cross-attention (encoder-decoder attention)
        mask:     bool, broadcastable to (B, h, N, N_k), True = allowed
        past_kv:  (k, v), each (B, h, P, head_dim), cached from earlier steps; the new keys and
                  values are appended after them (incremental decoding)
        returns   out (B, N, dim) and the full (k, v) of shape (B, h, P + N_k_new, head_dim)

    `attention` replaces Eq. 1 by any function with the same signature (e.g. CogView's
    PB-relaxed attention in ar_prior.py or a sparse variant); the default is Eq. 1.
    """

    def __init__(self, dim: int, n_heads: int, bias: bool = True, attention: AttentionFn | None = None):
        super().__init__()
        if dim % n_heads:
            raise ValueError("dim must be divisible by n_heads")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.q_proj = nn.Linear(dim, dim, bias=bias)  # W^Q for all heads
        self.k_proj = nn.Linear(dim, dim, bias=bias)  # W^K
        self.v_proj = nn.Linear(dim, dim, bias=bias)  # W^V
        self.out_proj = nn.Linear(dim, dim, bias=bias)  # W^O
        self.attention = attention or scaled_dot_product_attention

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, h, N, head_dim)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.n_heads * self.head_dim)  # (B, N, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        src = x if context is None else context
        q = self.split_heads(self.q_proj(x))  # (B, h, N, head_dim)
        k = self.split_heads(self.k_proj(src))  # (B, h, M, head_dim)
        v = self.split_heads(self.v_proj(src))  # (B, h, M, head_dim)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)  # (B, h, P + M, head_dim)
            v = torch.cat([past_kv[1], v], dim=2)
        out = self.attention(q, k, v, mask)  # (B, h, N, head_dim)
        return self.out_proj(self.merge_heads(out)), (k, v)


class TransformerBlock(nn.Module):
    """Pre-LN transformer layer: self-attention, optional cross-attention to a context, MLP; each residual.

    Sec. 3.1's sub-layers with the LayerNorm moved to the input of each branch (the GPT-2 placement
    all later token models use). Options for the papers that change the layer:
        cross_attention  attend to an encoder output or a text embedding (Parti, Muse, ImageBART)
        sandwich_ln      CogView's Sandwich-LN: a second LayerNorm on each branch output
        attention        a replacement for scaled_dot_product_attention (CogView's PB-relaxation)
        layer_norm       a replacement for calling a LayerNorm, (x, ln) -> y (PB-relaxed LN)
    forward(x (B, N, D), mask, past_kv, context (B, M, D), keep (B,) bool) returns (x, (k, v)),
    the self-attention keys and values for a cache; keep=False drops an example's cross-attention
    (a dropped condition in classifier-free guidance training).
    """

    def __init__(self, dim: int, n_heads: int, cross_attention: bool = False, sandwich_ln: bool = False,
                 attention: Callable | None = None, layer_norm: Callable | None = None):
        super().__init__()
        self.layer_norm = layer_norm or (lambda x, ln: ln(x))
        out_norm = (lambda: nn.LayerNorm(dim)) if sandwich_ln else nn.Identity
        self.ln_attn_in, self.attn, self.ln_attn_out = nn.LayerNorm(dim), MultiHeadAttention(dim, n_heads, attention=attention), out_norm()
        self.cross = None
        if cross_attention:
            self.ln_cross_in, self.cross, self.ln_cross_out = nn.LayerNorm(dim), MultiHeadAttention(dim, n_heads, attention=attention), out_norm()
        self.ln_ffn_in, self.ln_ffn_out = nn.LayerNorm(dim), out_norm()
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, mask=None, past_kv=None, context=None, keep=None):
        h, kv = self.attn(self.layer_norm(x, self.ln_attn_in), mask=mask, past_kv=past_kv)  # (B, N, D)
        x = x + self.ln_attn_out(h)
        if self.cross is not None and context is not None:
            h, _ = self.cross(self.layer_norm(x, self.ln_cross_in), context=context)  # (B, N, D), reads (B, M, D)
            if keep is not None:
                h = h * keep.view(-1, 1, 1).to(h.dtype)
            x = x + self.ln_cross_out(h)
        x = x + self.ln_ffn_out(self.ffn(self.layer_norm(x, self.ln_ffn_in)))
        return x, kv
