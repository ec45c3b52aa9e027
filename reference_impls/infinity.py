"""Infinity: bitwise tokens over next-scale maps, a bitwise classifier and bitwise self-correction.

Paper and note: Infinity: Scaling Bitwise AutoRegressive Modeling for High-Resolution Image
Synthesis, Han et al. 2025 (papers/han2025infinity.md). Official code: FoundationVision/Infinity
(infinity/models/bsq_vae/multiscale_bsq.py, infinity/models/infinity.py,
infinity/models/bitwise_self_correction.py, trainer.py). The scale machinery (pyramid sizes,
block-causal mask, area downsampling) is VAR's, imported from reference_impls/var.py.

Bitwise multi-scale residual quantiser (no codebook table; d bits per token, vocabulary 2^d):
    u_k = normalize(down(f_rest, h_k))                     l2 over the d channels
    q_k = sign(u_k) / sqrt(d)                              on the unit sphere; straight-through to u_k
    bits b_k = [u_k > 0],  index = sum_c b_{k,c} 2^c
    f_hat = sum_k up(q_k),   f_rest <- f_rest - up(q_k)     (bilinear up; no phi blend)

Infinite-vocabulary classifier (IVC): a linear head to 2d logits read as d two-way softmaxes,
    p(token = b | h) = prod_{c=1}^{d} softmax(l_c(h))[b_c]
which equals a softmax over all 2^d indices whose logit is sum_c l_c(h)[b_c], without ever building it:
the head has 2 d h weights instead of 2^d h.
Loss (trainer.py, bitloss_type 'mean'): per token, the mean over bits of the two-way cross-entropy.

Bitwise self-correction (bitwise_self_correction.py flip_requant): for the first n_flip scales, each
bit is flipped with probability p ~ Uniform{0, .01, .., strength}; the flipped code is what enters the
running sum, so the next scales' residuals, inputs and labels are computed after the error, and the
model learns to correct it.

Sampling guidance (infinity.py): l~ = cfg l_c + (1 - cfg) l_u on every bit's logits (guidance.guide_s).

Conditioning (two variants, InfinityPrior(adaln=...)): the pooled text is the start token and every
block cross-attends to the text features in both; adaln=True adds the released shared adaLN
(infinity/models/infinity.py shared_ada_lin, basic.py CrossAttnBlock; tools/run_infinity.py builds it
with shared_aln=True):
one SiLU + Linear maps the start vector to six modulation vectors (gamma1, gamma2, scale1, scale2,
shift1, shift2) for all blocks, each block adding its own learned offset ada_gss (var.AdaLNBlock with
shared=True), and var.AdaLNBeforeHead before the bitwise head. Here the shared Linear starts at zero
(adaLN-Zero: the blocks start as their cross-attention alone). The sampler's default cfg = 3.0 is the
--cfg default of tools/run_infinity.py for the released (adaLN) models (scripts/infer.sh passes 4);
the first-token variant has no released value.

Notation (code -> paper / official code):
    d        codebook_dim (bits per token; V_d = 2^d)      bits       bit_label
    n_flip   noise_apply_layers                            strength   noise_apply_strength
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.attention import TransformerBlock
from reference_impls.guidance import guide_s
from reference_impls.var import AdaLNBeforeHead, AdaLNBlock, block_causal_mask, down, scale_ids, sequence_length
from reference_impls.vq import straight_through

# ----------------------------------------------------------------------------- bits and indices


def bits_to_index(bits: torch.Tensor) -> torch.Tensor:
    """(..., d) bits in {0, 1} -> (...,) int64 index sum_c b_c 2^c (d <= 62)."""
    weights = 2 ** torch.arange(bits.shape[-1], device=bits.device, dtype=torch.long)
    return (bits.long() * weights).sum(-1)


def index_to_bits(index: torch.Tensor, d: int) -> torch.Tensor:
    """(...,) int64 -> (..., d) bits, inverse of bits_to_index."""
    return (index[..., None] >> torch.arange(d, device=index.device)) & 1


def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
    """(..., d) bits -> codes (2 b - 1) / sqrt(d) on the unit sphere (indices_to_codes with l2norm)."""
    return (2.0 * bits.float() - 1.0) / bits.shape[-1] ** 0.5


def up(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, d, h, w) to (size, size), the 2-D case of the official trilinear; identity at size."""
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="bilinear")


def binary_quantize(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-first residual (B, d, h, w) -> (codes with straight-through to normalize(r), bits (B, h, w, d))."""
    u = F.normalize(r, dim=1)  # (B, d, h, w), unit vectors per position
    bits = (u > 0).permute(0, 2, 3, 1)  # (B, h, w, d)
    q = bits_to_codes(bits).permute(0, 3, 1, 2)  # (B, d, h, w)
    return straight_through(u, q), bits


# ----------------------------------------------------------------------------- the tokenizer's quantiser


def encode(
    f: torch.Tensor,
    scales: tuple[int, ...],
    *,
    n_flip: int = 0,
    strength: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Bit labels per scale [(B, h_k, h_k, d)], teacher-forcing inputs (B, L - h_1^2, d) and f_hat.

    n_flip > 0 applies bitwise self-correction: at the first n_flip scales the bits entering the running
    sum are flipped with a per-scale probability drawn from {0, 0.01, .., strength}; labels stay the true
    bits of each scale's residual given the (corrupted) history.
    """
    size = scales[-1]
    if f.shape[-1] != size or f.shape[-2] != size:
        raise ValueError(f"feature map {tuple(f.shape[-2:])} is not the last scale {size}")
    f_hat, labels, inputs = torch.zeros_like(f), [], []
    for k, s in enumerate(scales):
        q, bits = binary_quantize(down(f - f_hat.detach(), s))  # (B, d, s, s), (B, s, s, d)
        labels.append(bits)
        if k < n_flip:
            p = int(torch.randint(0, round(100 * strength) + 1, (1,), generator=generator)) / 100
            flip = torch.rand(bits.shape, generator=generator) < p
            q = bits_to_codes(bits ^ flip).permute(0, 3, 1, 2)  # re-quantised from the flipped bits
        f_hat = f_hat + up(q, size)
        if k + 1 < len(scales):
            inputs.append(up(f_hat, scales[k + 1]).flatten(2).transpose(1, 2))  # (B, h_{k+1}^2, d)
    return labels, torch.cat(inputs, dim=1), f_hat


def decode_bits(bits: list[torch.Tensor], size: int) -> torch.Tensor:
    """f_hat = sum_k up(codes(b_k)) from the bit maps alone: (B, d, size, size)."""
    return sum(up(bits_to_codes(b).permute(0, 3, 1, 2), size) for b in bits)


# ----------------------------------------------------------------------------- the bitwise classifier


class BitwiseHead(nn.Module):
    """IVC: hidden (..., D) -> per-bit logits (..., d, 2). 2 d (D + 1) parameters, whatever 2^d is."""

    def __init__(self, dim: int, bits: int):
        super().__init__()
        self.bits = bits
        self.proj = nn.Linear(dim, 2 * bits)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h).unflatten(-1, (self.bits, 2))  # (..., d, 2)


def token_log_prob(logits: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """log p(token) = sum_c log softmax(l_c)[b_c]: logits (..., d, 2), bits (..., d) -> (...,)."""
    return logits.log_softmax(-1).gather(-1, bits.long()[..., None]).squeeze(-1).sum(-1)


def bitwise_loss(logits: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """trainer.py's loss ('mean'): the two-way cross-entropy averaged over bits, then over tokens."""
    return F.cross_entropy(logits.reshape(-1, 2), bits.reshape(-1).long())


# ----------------------------------------------------------------------------- the prior


class InfinityPrior(nn.Module):
    """Text-conditioned next-scale prior with a bitwise head.

    forward(context (B, M, D) text features, inputs (B, n, d), keep (B,) bool or None) -> logits (B, l, d, 2).
    keep=False gives an example the empty condition (no cross-attention, zero start vector).
    """

    def __init__(
        self, *, bits: int, dim: int, n_layers: int, n_heads: int, scales: tuple[int, ...], adaln: bool = False
    ):
        super().__init__()
        self.scales, self.adaln, self.dim = tuple(scales), adaln, dim
        first, length = scales[0] ** 2, sequence_length(scales)
        self.word_embed = nn.Linear(bits, dim)
        self.sos = nn.Linear(dim, dim)  # pooled text -> start token
        self.pos_start = nn.Parameter(torch.randn(1, first, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        self.level = nn.Embedding(len(scales), dim)
        self.register_buffer("ids", scale_ids(scales), persistent=False)
        self.register_buffer("mask", block_causal_mask(scales), persistent=False)
        if adaln:
            self.shared_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))  # shared_ada_lin
            nn.init.zeros_(self.shared_ada[1].weight)
            nn.init.zeros_(self.shared_ada[1].bias)
            self.blocks = nn.ModuleList(
                AdaLNBlock(dim, n_heads, cond_dim=dim, cross_attention=True, shared=True) for _ in range(n_layers)
            )
            self.ln_f = AdaLNBeforeHead(dim, dim)
        else:
            self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, cross_attention=True) for _ in range(n_layers))
            self.ln_f = nn.LayerNorm(dim)
        self.head = BitwiseHead(dim, bits)

    def forward(self, context: torch.Tensor, inputs: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        b, first = context.shape[0], self.scales[0] ** 2
        pooled = context.mean(1) if keep is None else context.mean(1) * keep[:, None].to(context.dtype)
        cond = self.sos(pooled)  # (B, D)
        sos = cond[:, None] + self.pos_start  # (B, h_1^2, D)
        x = torch.cat([sos.expand(b, first, -1), self.word_embed(inputs)], dim=1)
        n = x.shape[1]
        x = x + self.pos[:, :n] + self.level(self.ids[:n])
        mask = self.mask[:n, :n]
        if self.adaln:
            shared = self.shared_ada(cond).unflatten(-1, (6, self.dim))  # (B, 6, D), computed once
            for block in self.blocks:
                x = block(x, shared, mask=mask, context=context, keep=keep)
            return self.head(self.ln_f(x, cond))  # (B, n, d, 2)
        for block in self.blocks:
            x = block(x, mask=mask, context=context, keep=keep)  # TransformerBlock returns the hidden state
        return self.head(self.ln_f(x))  # (B, n, d, 2)


def infinity_loss(
    prior: InfinityPrior,
    f: torch.Tensor,
    context: torch.Tensor,
    *,
    n_flip: int = 0,
    strength: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bitwise cross-entropy over all scales of f (B, d, H, W), with bitwise self-correction if n_flip > 0."""
    with torch.no_grad():
        labels, inputs, _ = encode(f, prior.scales, n_flip=n_flip, strength=strength, generator=generator)
    logits = prior(context, inputs)  # (B, L, d, 2)
    target = torch.cat([bits.flatten(1, 2) for bits in labels], dim=1)  # (B, L, d)
    return bitwise_loss(logits, target)


@torch.no_grad()
def sample(
    prior: InfinityPrior, context: torch.Tensor, *, cfg: float = 3.0, generator: torch.Generator | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale by scale, every bit of every token drawn from its own two-way softmax; returns (bits, f_hat).

    cfg = 3.0 is tools/run_infinity.py's default for the released (adaLN) models.
    """
    b, scales, d = context.shape[0], prior.scales, prior.head.bits
    ctx = context.repeat(2, 1, 1)
    keep = torch.cat([torch.ones(b, dtype=torch.bool), torch.zeros(b, dtype=torch.bool)]).to(context.device)
    inputs = context.new_zeros(2 * b, 0, d)
    f_hat, out, start = context.new_zeros(b, d, scales[-1], scales[-1]), [], 0
    for k, s in enumerate(scales):
        logits = prior(ctx, inputs, keep)[:, start : start + s * s]  # (2B, s*s, d, 2)
        logits = guide_s(logits[:b], logits[b:], cfg)
        bits = sample_from_logits(logits.reshape(-1, 2), generator).view(b, s, s, d).bool()
        out.append(bits)
        f_hat = f_hat + up(bits_to_codes(bits).permute(0, 3, 1, 2), scales[-1])
        start += s * s
        if k + 1 < len(scales):
            inputs = torch.cat([inputs, up(f_hat, scales[k + 1]).flatten(2).transpose(1, 2).repeat(2, 1, 1)], dim=1)
    return out, f_hat
