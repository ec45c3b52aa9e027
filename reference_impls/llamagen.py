"""LlamaGen: a Llama-style raster next-token prior with 2-D rotary positions and guidance on logits.

Paper and note: Autoregressive Model Beats Diffusion: Llama for Scalable Image Generation,
Sun et al. 2024 (papers/sun2024autoregressive.md). Official code: FoundationVision/LlamaGen
(autoregressive/models/gpt.py, autoregressive/models/generate.py).

The image is a raster sequence of VQ indices (ar_prior.raster_flatten). The sequence fed to the
decoder is [class embedding; token embeddings]; output i predicts token i. There is no absolute
position table: positions enter only through rotary embeddings of the queries and keys, in 2-D.

Equations implemented:
    RoPE (one pair)     rot_theta(x)_{2p, 2p+1} = (x_{2p} cos theta_p - x_{2p+1} sin theta_p,
                                                  x_{2p+1} cos theta_p + x_{2p} sin theta_p)
    frequencies         omega_p = base^(-2p / (d_h / 2)),   p = 0 .. d_h / 4 - 1
    2-D angles          pairs 0 .. d_h/4 - 1 rotate by   row * omega_p
                        pairs d_h/4 .. d_h/2 - 1 rotate by col * omega_{p - d_h/4}
    relativity          <rot(q, (r1, c1)), rot(k, (r2, c2))> depends only on (r1 - r2, c1 - c2)
    likelihood          log p(y | c) = sum_i log p(y_i | c, y_<i)      (raster order)
    guidance (logits)   l~ = l_u + s (l_c - l_u)   (guidance.guide_s; s = 1 gives l_c)
    condition dropout   the class is replaced by a null class with probability p_uncond (guidance.drop_condition)

Notation (code -> paper / official code):
    head_dim       d_h = dim / n_heads            base        rope_base = 10000
    n_prefix       cls_token_num (1 for class-conditional)
    null_label     num_classes (the extra row of the label table, LabelEmbedder)
    scale          cfg_scale (sample_c2i.py default 4.0)

Deliberate differences from the official model: the shared attention.TransformerBlock (pre-LN
LayerNorm, GELU MLP) stands in for Llama's RMSNorm and SwiGLU, and sampling recomputes the
prefix at every step instead of keeping a key-value cache (the causality test shows the two agree).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import filter_logits, sample_from_logits
from reference_impls.attention import TransformerBlock, causal_mask, scaled_dot_product_attention
from reference_impls.guidance import drop_condition, guide_s

# ----------------------------------------------------------------------------- 2-D rotary positions


def rope_2d_angles(grid_h: int, grid_w: int, head_dim: int, *, base: float = 10000.0) -> torch.Tensor:
    """The rotation angle of every pair at every raster position: (grid_h * grid_w, head_dim // 2).

    The first half of the pairs carries the row, the second half the column (gpt.py precompute_freqs_cis_2d).
    """
    if head_dim % 4:
        raise ValueError("2-D RoPE needs head_dim divisible by 4 (two axes, pairs of channels)")
    half = head_dim // 2  # channels per axis
    omega = base ** (-torch.arange(0, half, 2, dtype=torch.float64) / half)  # (head_dim / 4,)
    rows = torch.arange(grid_h, dtype=torch.float64)[:, None, None] * omega  # (H, 1, d_h/4)
    cols = torch.arange(grid_w, dtype=torch.float64)[None, :, None] * omega  # (1, W, d_h/4)
    angles = torch.cat([rows.expand(grid_h, grid_w, -1), cols.expand(grid_h, grid_w, -1)], dim=-1)  # (H, W, d_h/2)
    return angles.reshape(grid_h * grid_w, half)


def rope_table(
    grid_h: int, grid_w: int, head_dim: int, *, n_prefix: int = 1, base: float = 10000.0, prefix: str = "identity"
) -> torch.Tensor:
    """(n_prefix + H*W, head_dim // 2, 2) table of (cos, sin), prefix rows first.

    prefix="identity" leaves the condition tokens unrotated (cos 1, sin 0); prefix="zero" copies the
    official code, whose prefix rows are all zero, which multiplies the condition token's query and key by 0.
    """
    angles = rope_2d_angles(grid_h, grid_w, head_dim, base=base)  # (H*W, d_h/2)
    grid = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (H*W, d_h/2, 2)
    if prefix == "identity":
        pre = torch.stack([torch.ones(n_prefix, head_dim // 2), torch.zeros(n_prefix, head_dim // 2)], dim=-1)
    elif prefix == "zero":
        pre = torch.zeros(n_prefix, head_dim // 2, 2)
    else:
        raise ValueError(f"prefix must be 'identity' or 'zero', got {prefix!r}")
    return torch.cat([pre.to(grid.dtype), grid]).float()


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2p, 2p+1) of x (..., N, d_h) by the N rows of table (N, d_h/2, 2)."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)  # (..., N, d_h/2, 2)
    cos, sin = table[..., 0], table[..., 1]  # (N, d_h/2)
    out = torch.stack([pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 1] * cos + pairs[..., 0] * sin], dim=-1)
    return out.flatten(-2)


class RotaryAttention:
    """Eq. 1 of the Transformer on rotated queries and keys: an `attention` option for attention.TransformerBlock.

    Keys are the positions 0 .. N_k - 1 of the table; queries are the last N_q of those (self-attention,
    also when earlier keys come from a cache).
    """

    def __init__(self, table: torch.Tensor):
        self.table = table  # (L, d_h/2, 2)

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        n_q, n_k = q.shape[-2], k.shape[-2]
        table = self.table.to(q.device)
        k = apply_rope(k, table[:n_k])  # (B, h, N_k, d_h)
        q = apply_rope(q, table[n_k - n_q : n_k])  # (B, h, N_q, d_h)
        return scaled_dot_product_attention(q, k, v, mask)


# ----------------------------------------------------------------------------- the prior


class LlamaGenPrior(nn.Module):
    """Class-conditional raster prior over a (grid_h, grid_w) token grid.

    forward(tokens (B, n) with n <= H*W - 1 ... H*W, labels (B,)) -> logits (B, n + 1, V):
    logits[:, i] is p(y_i | c, y_<i). Label `n_classes` is the null class of guidance.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        n_classes: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        grid: tuple[int, int],
        rope_base: float = 10000.0,
        prefix_rotation: str = "identity",
    ):
        super().__init__()
        self.vocab_size, self.n_classes, self.grid = vocab_size, n_classes, grid
        self.null_label = n_classes
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.cls_emb = nn.Embedding(n_classes + 1, dim)  # the last row is the null class
        table = rope_table(*grid, dim // n_heads, n_prefix=1, base=rope_base, prefix=prefix_rotation)
        self.register_buffer("rope", table, persistent=False)  # (1 + H*W, d_h/2, 2)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, attention=RotaryAttention(table)) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1] + 1
        if n > self.rope.shape[0]:
            raise ValueError(f"{tokens.shape[1]} tokens exceed the grid of {self.rope.shape[0] - 1}")
        x = torch.cat([self.cls_emb(labels)[:, None], self.tok_emb(tokens)], dim=1)  # (B, 1 + n_tok, D)
        mask = causal_mask(n, tokens.device)
        for block in self.blocks:
            x = block(x, mask=mask)  # TransformerBlock returns the hidden state
        return self.head(self.ln_f(x))  # (B, 1 + n_tok, V)


def llamagen_loss(
    model: LlamaGenPrior,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy over all H*W tokens (B, N), the class dropped to null with probability p_uncond."""
    null = torch.tensor(model.null_label, device=labels.device)
    labels, _ = drop_condition(labels, null, p_uncond, generator)
    logits = model(tokens[:, :-1], labels)  # (B, N, V): the class predicts y_0, y_{i-1} predicts y_i
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


def guided_logits(model: LlamaGenPrior, tokens: torch.Tensor, labels: torch.Tensor, *, scale: float) -> torch.Tensor:
    """Next-token logits (B, V) under guidance: l_u + scale (l_c - l_u), both branches in one batch."""
    b = labels.shape[0]
    both = model(tokens.repeat(2, 1), torch.cat([labels, torch.full_like(labels, model.null_label)]))[:, -1]  # (2B, V)
    return guide_s(both[:b], both[b:], scale)


@torch.no_grad()
def sample(
    model: LlamaGenPrior,
    labels: torch.Tensor,
    *,
    scale: float = 4.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw the full (B, H*W) raster of tokens, one guided categorical draw per step (ar_prior's sampler)."""
    n = model.grid[0] * model.grid[1]
    tokens = torch.zeros(labels.shape[0], 0, dtype=torch.long, device=labels.device)
    for _ in range(n):
        logits = guided_logits(model, tokens, labels, scale=scale)  # (B, V)
        nxt = sample_from_logits(filter_logits(logits, temperature, top_k, top_p), generator)  # (B,)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
    return tokens
