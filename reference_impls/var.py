"""VAR: next-scale prediction over a multi-scale residual token map; class as first token, or also adaLN.

Paper and note: Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction, Tian et al. 2024 (papers/tian2024visual.md). Official code: FoundationVision/VAR
(models/quant.py VectorQuantizer2, models/var.py VAR). Infinity (reference_impls/infinity.py,
papers/han2025infinity.md) reuses the scale machinery here with bitwise codes.

Multi-scale residual quantisation (the tokenizer; one codebook Z shared by all K scales):
    f_rest = f,  f_hat = 0
    for k = 1 .. K:
        r_k   = Q(down(f_rest, h_k x w_k))           nearest code of the area-downsampled residual
        z_k   = phi_k(up(Z[r_k], h_K x w_K))         bicubic upsampling, then a 3x3 conv blend
        f_hat = f_hat + z_k,   f_rest = f_rest - z_k
    so f_hat = sum_k z_k, and f = f_hat + f_rest exactly.
    phi_k(h) = (1 - rho) h + rho conv3x3(h), rho = 0.5; 4 convs shared by the K scales, scale k
    taking the conv whose tick is nearest to k / (K - 1) (quant.py PhiPartiallyShared).
    Down/upsampling are skipped at the last scale (h_K x w_K is the full map).
    Loss (quant.py): codebook ||f_hat - sg[f]||^2 + beta ||f - sg[f_hat]||^2 averaged over the scales'
    partial sums, straight-through from f_hat to f.

Next-scale prediction (the prior):
    p(r_1, .., r_K) = prod_k p(r_k | r_1, .., r_{k-1})        all tokens of r_k in parallel
    input of scale k+1 = down(sum_{j <= k} z_j, h_{k+1} x w_{k+1}) projected to the model width;
    input of scale 1 = the class embedding (+ a learned start position)
    block-causal mask: token i may attend to token j iff scale(j) <= scale(i)
    sampling guidance (var.py): l~ = (1 + t_k) l_c - t_k l_u with t_k = cfg * (k - 1) / (K - 1)
    (guidance.guide_w with w = t_k: no guidance at the first scale, full at the last)

Conditioning (two variants, VARPrior(adaln=...)):
    adaln=False  the class embedding is the start token only; every later token reads it by attention.
    adaln=True   the released form (models/basic_var.py AdaLNSelfAttn, AdaLNBeforeHead): the class
                 embedding c is also the start token, and in every block
                     (g1, g2, s1, s2, b1, b2) = Linear(SiLU(c))             six (B, D) vectors
                     x <- x + g1 * Attn(LN(x) (1 + s1) + b1)
                     x <- x + g2 * FFN(LN(x) (1 + s2) + b2)                  LN without affine
                 and before the head LN(x) (1 + s) + b from a seventh Linear(SiLU(c)).
    The sampler's default cfg = 1.5 is the README's value for the released adaLN models; the first-
    token variant was not tuned by anyone and has no released guidance value.
    AdaLNBlock starts as adaLN-Zero (modulation Linear at zero: the block is the identity), as RAR's
    release initialises it; VAR's init_weights scales the gate rows by 1e-5 and the others by 0.5
    (models/var.py init_weights, init_adaln_gamma=1e-5, init_adaln=0.5), so it starts near it.
    shared=True is Infinity's form (one Linear for all blocks plus a learned per-block offset ada_gss).

Notation (code -> paper / official code):
    scales       (h_1, .., h_K), patch_nums (1, 2, 3, 4, 5, 6, 8, 10, 13, 16) at 256 px
    codebook     Z, V x C_vae (V = 4096, C_vae = 32)     rho   quant_resi = 0.5
    f, f_hat     f, f_hat                              z_k   h_BChw after phi
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits, top_k_filter
from reference_impls.attention import MultiHeadAttention, TransformerBlock
from reference_impls.guidance import drop_condition, guide_w
from reference_impls.vq import nearest_code, straight_through, vq_losses

Phi = Callable[[torch.Tensor, int], torch.Tensor]  # (h (B, C, H, W), scale index k) -> phi_k(h)


# ----------------------------------------------------------------------------- scales and masks


def sequence_length(scales: tuple[int, ...]) -> int:
    """L = sum_k h_k^2 tokens over all scales (680 for the 256 px default)."""
    return sum(s * s for s in scales)


def scale_ids(scales: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """(L,) index of the scale of every token of the flattened pyramid (coarse first, raster inside a scale)."""
    return torch.cat([torch.full((s * s,), k, device=device) for k, s in enumerate(scales)])


def block_causal_mask(scales: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """(L, L) bool, True where token i may attend to token j: scale(j) <= scale(i)."""
    ids = scale_ids(scales, device)
    return ids[None, :] <= ids[:, None]


def down(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area downsampling of (B, C, H, W) to (size, size); the identity at full size."""
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="area")


def up(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic upsampling of (B, C, h, w) to (size, size); the identity at full size."""
    return x if x.shape[-1] == size and x.shape[-2] == size else F.interpolate(x, size=(size, size), mode="bicubic")


# ----------------------------------------------------------------------------- the residual blend phi


class PhiBank(nn.Module):
    """phi_k(h) = (1 - rho) h + rho conv3x3(h), with n_phi convs shared by the K scales (quant.py Phi)."""

    def __init__(self, dim: int, *, n_phi: int = 4, rho: float = 0.5):
        super().__init__()
        self.rho = rho
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in range(n_phi))
        n = n_phi  # quant.py's ticks: a quirk that spaces 4 convs differently from other counts
        self.ticks = np.linspace(1 / 3 / n, 1 - 1 / 3 / n, n) if n == 4 else np.linspace(1 / 2 / n, 1 - 1 / 2 / n, n)

    def index(self, k: int, n_scales: int) -> int:
        """The conv used at scale k of n_scales: the tick nearest to k / (K - 1)."""
        return int(np.argmin(np.abs(self.ticks - k / max(n_scales - 1, 1))))

    def forward(self, h: torch.Tensor, k: int, n_scales: int) -> torch.Tensor:
        return (1 - self.rho) * h + self.rho * self.convs[self.index(k, n_scales)](h)


# ----------------------------------------------------------------------------- the tokenizer


class MultiScaleVQ(nn.Module):
    """Multi-scale residual quantiser of (B, C, H, W) maps with H = W = scales[-1] and one shared codebook."""

    def __init__(
        self,
        *,
        num_codes: int,
        dim: int,
        scales: tuple[int, ...],
        beta: float = 0.25,
        n_phi: int = 4,
        rho: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.scales, self.beta = tuple(scales), beta
        self.codebook = nn.Parameter(torch.randn(num_codes, dim, generator=generator))  # (V, C)
        self.phi = PhiBank(dim, n_phi=n_phi, rho=rho) if rho else None

    def contribution(self, codes: torch.Tensor, k: int) -> torch.Tensor:
        """z_k = phi_k(up(codes)) for codes (B, C, h_k, h_k): (B, C, H, W)."""
        h = up(codes, self.scales[-1])
        return self.phi(h, k, len(self.scales)) if self.phi is not None else h

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w) -> codes (B, C, h, w)."""
        return F.embedding(idx, self.codebook).permute(0, 3, 1, 2)

    def encode(self, f: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """The encoding loop: indices [(B, h_k, h_k)], contributions [z_k (B, C, H, W)] and the final f_rest."""
        if f.shape[-1] != self.scales[-1] or f.shape[-2] != self.scales[-1]:
            raise ValueError(f"feature map {tuple(f.shape[-2:])} is not the last scale {self.scales[-1]}")
        f_rest = f.detach()
        indices, parts = [], []
        for k, s in enumerate(self.scales):
            r = down(f_rest, s)  # (B, C, s, s)
            b, c = r.shape[:2]
            idx = nearest_code(r.permute(0, 2, 3, 1).reshape(-1, c), self.codebook).view(b, s, s)
            z = self.contribution(self.lookup(idx), k)  # (B, C, H, W)
            f_rest = f_rest - z.detach()
            indices.append(idx)
            parts.append(z)
        return indices, parts, f_rest

    def decode_indices(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """f_hat = sum_k phi_k(up(Z[r_k])) from the token maps alone: (B, C, H, W)."""
        return sum(self.contribution(self.lookup(idx), k) for k, idx in enumerate(indices))

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Returns (f_hat with straight-through to f, indices per scale, loss)."""
        indices, parts, _ = self.encode(f)
        partial, loss = torch.zeros_like(f), f.new_zeros(())
        for z in parts:
            partial = partial + z
            loss = loss + vq_losses(f, partial, self.beta)[2]  # ||partial - sg[f]||^2 + beta ||f - sg[partial]||^2
        return straight_through(f, partial), indices, loss / len(parts)

    def next_scale_inputs(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing inputs (B, L - h_1^2, C): scale k+1 reads down(sum_{j<=k} z_j, h_{k+1})."""
        f_hat, inputs = 0, []
        for k, idx in enumerate(indices[:-1]):
            f_hat = f_hat + self.contribution(self.lookup(idx), k)
            nxt = down(f_hat, self.scales[k + 1])  # (B, C, h_{k+1}, h_{k+1})
            inputs.append(nxt.flatten(2).transpose(1, 2))
        return torch.cat(inputs, dim=1)


# ----------------------------------------------------------------------------- adaLN conditioning


class AdaLNBlock(nn.Module):
    """Pre-LN block whose norms are modulated by a condition (basic_var.py AdaLNSelfAttn).

    AdaLNBlock(dim, n_heads, *, cond_dim, cross_attention=False, shared=False)
    forward(x (B, N, D), cond, *, mask=None, context=None, keep=None) -> (B, N, D)
        cond     (B, cond_dim) or (B, N, cond_dim) per position (RAR); with shared=True, the shared
                 modulation (B, [N,] 6, D) that the caller computed once for all blocks (Infinity)
        context  (B, M, D) read by an unmodulated cross-attention with its own affine LayerNorm
    The six modulation vectors are laid out as released: gamma1, gamma2, scale1, scale2, shift1, shift2.
    """

    def __init__(self, dim: int, n_heads: int, *, cond_dim: int, cross_attention: bool = False, shared: bool = False):
        super().__init__()
        self.dim, self.shared = dim, shared
        self.ln = nn.LayerNorm(dim, elementwise_affine=False)  # ln_wo_grad
        self.attn = MultiHeadAttention(dim, n_heads)
        self.cross = MultiHeadAttention(dim, n_heads) if cross_attention else None
        self.ln_cross = nn.LayerNorm(dim) if cross_attention else None
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        if shared:
            self.ada_gss = nn.Parameter(torch.zeros(6, dim))  # per-block offset added to the shared modulation
        else:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
            nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: the block starts as the identity
            nn.init.zeros_(self.ada[1].bias)

    def modulation(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, [N,] 6, D): gamma1, gamma2, scale1, scale2, shift1, shift2."""
        if self.shared:
            return cond + self.ada_gss
        return self.ada(cond).unflatten(-1, (6, self.dim))

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        m = self.modulation(cond)
        if m.dim() == 3:
            m = m[:, None]  # (B, 1, 6, D): one modulation for every position
        g1, g2, s1, s2, b1, b2 = m.unbind(-2)  # each (B, N or 1, D)
        x = x + g1 * self.attn(self.ln(x) * (1 + s1) + b1, mask=mask)
        if self.cross is not None and context is not None:
            h = self.cross(self.ln_cross(x), context=context)  # (B, N, D)
            x = x + (h if keep is None else h * keep.view(-1, 1, 1).to(h.dtype))
        return x + g2 * self.ffn(self.ln(x) * (1 + s2) + b2)


class AdaLNBeforeHead(nn.Module):
    """LN(x) (1 + scale) + shift with (scale, shift) = Linear(SiLU(c)) (basic_var.py AdaLNBeforeHead)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.dim = dim
        self.ln = nn.LayerNorm(dim, elementwise_affine=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada(cond).unflatten(-1, (2, self.dim)).unbind(-2)  # (B, [N,] D) each
        if scale.dim() == 2:
            scale, shift = scale[:, None], shift[:, None]
        return self.ln(x) * (1 + scale) + shift


# ----------------------------------------------------------------------------- the prior


class VARPrior(nn.Module):
    """Class-conditional next-scale prior: logits (B, L, V) for all scales from the teacher-forcing inputs.

    Class label n_classes is the null class of guidance. adaln=True adds the released adaLN
    conditioning (AdaLNBlock, AdaLNBeforeHead from the class embedding); the start token is the
    class embedding in both variants.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        code_dim: int,
        n_classes: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        scales: tuple[int, ...],
        adaln: bool = False,
    ):
        super().__init__()
        self.scales, self.null_label, self.adaln = tuple(scales), n_classes, adaln
        first, length = scales[0] ** 2, sequence_length(scales)
        self.word_embed = nn.Linear(code_dim, dim)
        self.class_emb = nn.Embedding(n_classes + 1, dim)
        self.pos_start = nn.Parameter(torch.randn(1, first, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)  # one learned position per token of the pyramid
        self.level = nn.Embedding(len(scales), dim)  # which scale a token belongs to
        self.register_buffer("ids", scale_ids(scales), persistent=False)
        self.register_buffer("mask", block_causal_mask(scales), persistent=False)
        if adaln:
            self.blocks = nn.ModuleList(AdaLNBlock(dim, n_heads, cond_dim=dim) for _ in range(n_layers))
            self.ln_f = AdaLNBeforeHead(dim, dim)
        else:
            self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
            self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """labels (B,), inputs (B, n, C) for the scales after the first (n may stop at a scale boundary)."""
        b = labels.shape[0]
        first = self.scales[0] ** 2
        cond = self.class_emb(labels)  # (B, D)
        sos = cond[:, None] + self.pos_start  # (B, h_1^2, D)
        x = torch.cat([sos.expand(b, first, -1), self.word_embed(inputs)], dim=1)  # (B, l, D)
        n = x.shape[1]
        x = x + self.pos[:, :n] + self.level(self.ids[:n])
        mask = self.mask[:n, :n]
        if self.adaln:
            for block in self.blocks:
                x = block(x, cond, mask=mask)
            return self.head(self.ln_f(x, cond))  # (B, l, V)
        for block in self.blocks:
            x = block(x, mask=mask)  # TransformerBlock returns the hidden state
        return self.head(self.ln_f(x))  # (B, l, V)


def var_loss(
    prior: VARPrior,
    vq: MultiScaleVQ,
    f: torch.Tensor,
    labels: torch.Tensor,
    *,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy of all L tokens of the pyramid of f (B, C, H, W), each scale predicted from the coarser ones."""
    with torch.no_grad():
        indices, _, _ = vq.encode(f)
        inputs = vq.next_scale_inputs(indices)
    labels, _ = drop_condition(labels, torch.tensor(prior.null_label, device=labels.device), p_uncond, generator)
    logits = prior(labels, inputs)  # (B, L, V)
    target = torch.cat([idx.flatten(1) for idx in indices], dim=1)  # (B, L)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def guidance_ramp(cfg: float, k: int, n_scales: int) -> float:
    """var.py's guidance strength at scale k (0-based): t_k = cfg * k / (K - 1)."""
    return cfg * k / max(n_scales - 1, 1)


@torch.no_grad()
def sample(
    prior: VARPrior,
    vq: MultiScaleVQ,
    labels: torch.Tensor,
    *,
    cfg: float = 1.5,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Generate the K token maps coarse to fine, all tokens of a scale drawn at once; returns (indices, f_hat).

    cfg = 1.5 is the README's evaluation value for the released (adaLN) models; a first-token prior
    (adaln=False) has no released value.
    """
    b, scales = labels.shape[0], prior.scales
    both = torch.cat([labels, torch.full_like(labels, prior.null_label)])  # conditional and null branches
    inputs = torch.zeros(2 * b, 0, vq.codebook.shape[1], device=labels.device)
    f_hat, indices, start = 0, [], 0
    for k, s in enumerate(scales):
        logits = prior(both, inputs)[:, start : start + s * s]  # (2B, s*s, V), this scale's rows
        logits = guide_w(logits[:b], logits[b:], guidance_ramp(cfg, k, len(scales)))
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        idx = sample_from_logits(logits.reshape(b * s * s, -1), generator).view(b, s, s)
        indices.append(idx)
        f_hat = f_hat + vq.contribution(vq.lookup(idx), k)
        start += s * s
        if k + 1 < len(scales):
            nxt = down(f_hat, scales[k + 1]).flatten(2).transpose(1, 2)  # (B, h_{k+1}^2, C)
            inputs = torch.cat([inputs, nxt.repeat(2, 1, 1)], dim=1)
    return indices, f_hat
