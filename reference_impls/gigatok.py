"""GigaTok: the Q-Former decoder (2-D grid queries cross-attend to the 1-D tokens) and the semantic regulariser.

Paper and note:
    - GigaTok, Xiong et al. 2025 (papers/xiong2025gigatok.md): semantic regularisation of the
      tokenizer while it is scaled, as released in SilentView/GigaTok
      (tokenizer/tokenizer_image/vq/vq_loss.py, vq/blocks.py, vq/vq_train.py).
    The encoder and quantiser are the 1-D tokenizer's of reference_impls/titok.py; the decoder is
    GigaTok's (`QFormerDecoder`, after vq/blocks.py ViTDecoder and TransformerDecoderLayer): grid
    queries that never mix with the tokens but read them by cross-attention. `gigatok_tokenizer`
    builds a TiTok with this decoder in place of TiTok's concatenation decoder (which stays
    available: SemanticallyRegularizedTokenizer accepts either). The pre-trained visual encoder
    (DINOv2 in the paper) cannot be loaded here and is replaced by `FrozenPatchEncoder`, a seeded
    random patch encoder: a structural stand-in with the same interface (one feature vector per
    patch, no gradient), not a semantic model.

Q-Former decoder (blocks.py ViTDecoder.forward, TransformerDecoderLayer.forward_pre, DETR's layer):
    memory   m = W_e LN(z_q)                      the K quantised 1-D tokens, (B, K, D), fixed across layers
    queries  q^0_n = m_1 for every grid position n  (no learnable_2d / multi-level query init: the
             default of vq_vit_model.py copies the first token's embedding to all h w queries)
    layer    q <- q + SelfAttn(Q = LN1(q) + P, K = LN1(q) + P, V = LN1(q))
             q <- q + CrossAttn(Q = LN2(q) + P, K = m + E, V = m)
             q <- q + W_2 GELU(W_1 LN3(q))
             P: learned grid positions (positional_embedding), E: learned token positions
             (latent_token_positional_embedding); positions enter queries and keys, never values.
    output   pixels from LN_post(q) per patch (the release: a 3x3 conv to z_channels, then a CNN decoder)

Equations implemented:
    features   h_l = the decoder's patch-query states after layer l         (B, N, D)
               z   = phi(h_l), phi a 3-layer MLP D -> 4D -> 4D -> D_t with SiLU
    teacher    t   = E(x), the frozen encoder's patch features             (B, N, D_t)
    regulariser  L_reg = (1 / B) sum_b (1 / N) sum_n  - cos(z_{b,n}, t_{b,n})
                 = -1 when every feature points along its teacher feature, +1 when opposite
    objective  L = L_rec + L_VQ + lambda L_reg          (lambda = 0.5 by default in the released trainer)

Notation (code -> paper / released code):
    layer      l (distill_depth = 3 in configs/vq/*.yaml)     projector   phi (the decoder's distill_mlp)
    teacher    the frozen pre-trained encoder (dinov2-vit-b by default)    weight   lambda (proj_weight)

Left out: the perceptual, adversarial and entropy losses (the released XL-XXL config sets
entropy_loss_ratio 0.005), the CNN stages around the transformer, the rotation-trick gradient the
released config enables, and the AR prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import MultiHeadAttention
from reference_impls.titok import TiTok, patchify, unpatchify


def semantic_regularization(features: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_reg = mean over batch and positions of -cos(features, teacher); both (B, N, D_t). The teacher is detached."""
    if features.shape != teacher.shape:
        raise ValueError(
            f"features {tuple(features.shape)} and teacher features {tuple(teacher.shape)} differ; "
            "expected one teacher vector per decoder position"
        )
    cos = (F.normalize(features, dim=-1) * F.normalize(teacher.detach(), dim=-1)).sum(-1)  # (B, N)
    return -cos.mean()


class FeatureProjector(nn.Module):
    """phi: the 3-layer SiLU MLP from decoder width D to the teacher's width D_t (the released distill_mlp)."""

    def __init__(self, dim: int, teacher_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, teacher_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)  # (B, N, D) -> (B, N, D_t)


class FrozenPatchEncoder(nn.Module):
    """Stand-in for the frozen pre-trained encoder: seeded random patch embedding, GELU, linear; no gradient."""

    def __init__(self, patch_size: int, dim: int, channels: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        fan_in = channels * patch_size * patch_size
        self.patch_size = patch_size
        self.register_buffer("w1", torch.randn(fan_in, dim, generator=g) / fan_in**0.5)
        self.register_buffer("w2", torch.randn(dim, dim, generator=g) / dim**0.5)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.gelu(patchify(images, self.patch_size) @ self.w1) @ self.w2  # (B, N, D_t)


def attend(mha: MultiHeadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with separate query, key and value inputs (DETR's with_pos_embed needs them)."""
    q = mha.split_heads(mha.q_proj(query))  # (B, h, N, d)
    k = mha.split_heads(mha.k_proj(key))  # (B, h, M, d)
    v = mha.split_heads(mha.v_proj(value))  # (B, h, M, d)
    return mha.out_proj(mha.merge_heads(mha.attention(q, k, v, None)))  # (B, N, D)


class QFormerLayer(nn.Module):
    """TransformerDecoderLayer.forward_pre: self-attention of the queries, cross-attention to the memory, MLP."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.self_attn, self.cross_attn = MultiHeadAttention(dim, n_heads), MultiHeadAttention(dim, n_heads)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self, q: torch.Tensor, memory: torch.Tensor, query_pos: torch.Tensor, memory_pos: torch.Tensor
    ) -> torch.Tensor:
        """q (B, N, D) grid queries, memory (B, K, D) tokens, positions broadcastable to each -> (B, N, D)."""
        h = self.norm1(q)
        q = q + attend(self.self_attn, h + query_pos, h + query_pos, h)
        q = q + attend(self.cross_attn, self.norm2(q) + query_pos, memory + memory_pos, memory)
        return q + self.mlp(self.norm3(q))


class QFormerDecoder(nn.Module):
    """GigaTok's decoder: h w grid queries read the K quantised tokens by cross-attention (see the docstring).

    Same interface as titok.TiTokDecoder: forward(z_q (B, K, c), grid, hidden_at=None) -> images, and with
    hidden_at=l also the query states after layer l (B, h w, D), which the semantic regulariser reads.
    """

    def __init__(
        self,
        *,
        patch_size: int,
        dim: int,
        depth: int,
        n_heads: int,
        num_latent_tokens: int,
        token_dim: int,
        grid: tuple[int, int],
        channels: int = 3,
    ):
        super().__init__()
        self.patch_size, self.dim, self.channels, self.grid = patch_size, dim, channels, tuple(grid)
        scale = dim**-0.5
        self.ln_pre = nn.LayerNorm(token_dim)
        self.embed = nn.Linear(token_dim, dim)  # decoder_embed
        self.query_pos = nn.Parameter(scale * torch.randn(grid[0] * grid[1], dim))  # positional_embedding
        self.latent_pos = nn.Parameter(scale * torch.randn(num_latent_tokens, dim))  # latent_token_positional_embedding
        self.blocks = nn.ModuleList(QFormerLayer(dim, n_heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(dim)
        self.to_pixels = nn.Linear(dim, channels * patch_size * patch_size)

    def forward(
        self, z_q: torch.Tensor, grid: tuple[int, int], hidden_at: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if tuple(grid) != self.grid:
            raise ValueError(f"grid {tuple(grid)} is not the decoder's {self.grid}: the query positions are learned")
        b, k = z_q.shape[:2]
        memory = self.embed(self.ln_pre(z_q))  # (B, K, D)
        q = memory[:, :1].expand(b, grid[0] * grid[1], -1)  # (B, h w, D): the first token, copied
        inner = None
        for i, block in enumerate(self.blocks, start=1):
            q = block(q, memory, self.query_pos, self.latent_pos[:k])
            if i == hidden_at:
                inner = q
        images = unpatchify(self.to_pixels(self.ln_post(q)), grid, self.patch_size, self.channels)
        return images if hidden_at is None else (images, inner)


def gigatok_tokenizer(*, grid: tuple[int, int], depth: int = 3, **titok_options) -> TiTok:
    """A TiTok encoder and quantiser with GigaTok's Q-Former decoder in place of the concatenation decoder."""
    tok = TiTok(depth=depth, **titok_options)
    old = tok.decoder
    tok.decoder = QFormerDecoder(
        patch_size=old.patch_size,
        dim=old.dim,
        depth=depth,
        n_heads=old.blocks[0].attn.n_heads,
        num_latent_tokens=tok.num_latent_tokens,
        token_dim=old.embed.in_features,
        grid=grid,
        channels=old.channels,
    )
    return tok


@dataclass
class GigaTokLosses:
    reconstruction: torch.Tensor  # (B, C, H, W)
    rec_loss: torch.Tensor
    vq_loss: torch.Tensor
    reg_loss: torch.Tensor  # L_reg, in [-1, 1]
    total: torch.Tensor  # rec + vq + lambda * reg


class SemanticallyRegularizedTokenizer(nn.Module):
    """A 1-D tokenizer whose decoder layer `layer` is regularised toward a frozen encoder (lambda = reg_weight)."""

    def __init__(self, tokenizer: TiTok, teacher: nn.Module, *, teacher_dim: int, layer: int, reg_weight: float = 0.5):
        super().__init__()
        if not 1 <= layer <= len(tokenizer.decoder.blocks):
            raise ValueError(f"layer {layer} is not a decoder layer; expected 1 .. {len(tokenizer.decoder.blocks)}")
        self.tokenizer, self.teacher, self.layer, self.reg_weight = tokenizer, teacher, layer, reg_weight
        self.projector = FeatureProjector(tokenizer.decoder.dim, teacher_dim)

    def forward(self, images: torch.Tensor) -> GigaTokLosses:
        p = self.tokenizer.patch_size
        grid = (images.shape[2] // p, images.shape[3] // p)
        q = self.tokenizer.quantize(images)
        rec, inner = self.tokenizer.decoder(q.z_q.transpose(1, 2), grid, hidden_at=self.layer)  # inner: (B, N, D)
        reg = semantic_regularization(self.projector(inner), self.teacher(images))
        rec_loss = (rec - images).square().mean()
        return GigaTokLosses(rec, rec_loss, q.loss, reg, rec_loss + q.loss + self.reg_weight * reg)
