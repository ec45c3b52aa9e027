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

API (all options keyword-only):
    MultiHeadAttention(dim, n_heads, *, bias=True, attention=None)
        .forward(x, *, context=None, mask=None, cache=None) -> (B, N, dim)
    TransformerBlock(dim, n_heads, *, cross_attention=False, sandwich_ln=False, attention=None,
                     layer_norm=None)
        .forward(x, *, mask=None, cache=None, context=None, keep=None) -> (B, N, dim)
    KVCache()  one layer's cached keys and values; pass it as `cache=` and it is appended to in
               place, so decoding one position at a time reads all earlier positions from it.
    A model with L layers keeps L caches, e.g. `caches = [KVCache() for _ in blocks]`.

Mask convention used everywhere in reference_impls: a boolean tensor broadcastable to
(..., N_q, N_k) where True means "may attend" and False means "blocked". A query row with no
allowed key would produce NaN; callers must always leave at least one key allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
LayerNormFn = Callable[[torch.Tensor, nn.LayerNorm], torch.Tensor]


class KVCache:
    """The keys and values one self-attention layer has seen so far, appended to in place.

    Incremental decoding (Sec. 3.2.3 at inference): a causal layer that has already read positions
    0 .. P - 1 keeps their keys and values, so the next position costs one query row instead of a
    full recomputation. `k`, `v`: (B, h, P, head_dim) or None while empty; len(cache) = P.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new (B, h, n, head_dim) keys and values after the old ones; return all of them."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)  # (B, h, P + n, head_dim)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class MultiHeadAttention(nn.Module):
    """Sec. 3.2.2: h parallel heads of Eq. 1 on learned projections, concatenated and projected.

    MultiHeadAttention(dim, n_heads, *, bias=True, attention=None)
    forward(x, *, context=None, mask=None, cache=None) -> out (B, N, dim)
        x:        (B, N, dim) queries (and keys/values for self-attention)
        context:  (B, M, dim) keys/values for cross-attention (encoder-decoder attention)
        mask:     bool, broadcastable to (B, h, N, N_k), True = allowed
        cache:    a KVCache; the new keys and values are appended to it in place and the queries
                  attend to everything it holds (incremental decoding)

    `attention` replaces Eq. 1 by any function with the same signature (e.g. CogView's
    PB-relaxed attention in ar_prior.py or a sparse variant); the default is Eq. 1.
    """

    def __init__(self, dim: int, n_heads: int, *, bias: bool = True, attention: AttentionFn | None = None):
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
        *,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        src = x if context is None else context
        q = self.split_heads(self.q_proj(x))  # (B, h, N, head_dim)
        k = self.split_heads(self.k_proj(src))  # (B, h, M, head_dim)
        v = self.split_heads(self.v_proj(src))  # (B, h, M, head_dim)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, h, P + M, head_dim)
        out = self.attention(q, k, v, mask)  # (B, h, N, head_dim)
        return self.out_proj(self.merge_heads(out))  # (B, N, dim)


def apply_layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    """The default `layer_norm` of TransformerBlock: just ln(x)."""
    return ln(x)


class TransformerBlock(nn.Module):
    """Pre-LN transformer layer: self-attention, optional cross-attention to a context, MLP; each residual.

    Sec. 3.1's sub-layers with the LayerNorm moved to the input of each branch (the GPT-2 placement
    all later token models use):
        x <- x + Out_a(SelfAttn(LN_a(x)))
        x <- x + keep * Out_c(CrossAttn(LN_c(x), context))        (only with cross_attention)
        x <- x + Out_f(FFN(LN_f(x))),   FFN(h) = W_2 GELU(W_1 h),  W_1: dim -> 4 dim
    where Out_* is the identity, or a second LayerNorm with sandwich_ln.

    TransformerBlock(dim, n_heads, *, cross_attention=False, sandwich_ln=False, attention=None, layer_norm=None)
        cross_attention  attend to an encoder output or a text embedding (Parti, Muse, ImageBART)
        sandwich_ln      CogView's Sandwich-LN: a second LayerNorm on each branch output
        attention        a replacement for scaled_dot_product_attention (CogView's PB-relaxation)
        layer_norm       a replacement for calling a LayerNorm, (x, ln) -> y (PB-relaxed LN)
    forward(x, *, mask=None, cache=None, context=None, keep=None) -> x (B, N, D)
        mask     bool, broadcastable to (B, h, N, P + N), True = allowed (e.g. causal_mask(N))
        cache    a KVCache of this layer's self-attention, appended to in place (incremental decoding)
        context  (B, M, D), read by the cross-attention
        keep     (B,) bool; False drops an example's cross-attention (a dropped condition in
                 classifier-free guidance training)
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        *,
        cross_attention: bool = False,
        sandwich_ln: bool = False,
        attention: AttentionFn | None = None,
        layer_norm: LayerNormFn | None = None,
    ):
        super().__init__()
        self.layer_norm = layer_norm or apply_layer_norm
        out_norm = (lambda: nn.LayerNorm(dim)) if sandwich_ln else nn.Identity
        self.ln_attn_in, self.attn, self.ln_attn_out = (
            nn.LayerNorm(dim),
            MultiHeadAttention(dim, n_heads, attention=attention),
            out_norm(),
        )
        self.cross = None
        if cross_attention:
            self.ln_cross_in, self.cross, self.ln_cross_out = (
                nn.LayerNorm(dim),
                MultiHeadAttention(dim, n_heads, attention=attention),
                out_norm(),
            )
        self.ln_ffn_in, self.ln_ffn_out = nn.LayerNorm(dim), out_norm()
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        context: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.attn(self.layer_norm(x, self.ln_attn_in), mask=mask, cache=cache)  # (B, N, D)
        x = x + self.ln_attn_out(h)
        if self.cross is not None and context is not None:
            h = self.cross(self.layer_norm(x, self.ln_cross_in), context=context)  # (B, N, D), reads (B, M, D)
            if keep is not None:
                h = h * keep.view(-1, 1, 1).to(h.dtype)
            x = x + self.ln_cross_out(h)
        return x + self.ln_ffn_out(self.ffn(self.layer_norm(x, self.ln_ffn_in)))  # (B, N, D)
