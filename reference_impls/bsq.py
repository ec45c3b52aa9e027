"""Binary spherical quantisation (BSQ): project, l2-normalise, take signs on the unit sphere.

Paper and note:
    - BSQ, Zhao, Xiong and Kraehenbuehl 2025, "Image and Video Tokenization with Binary Spherical
      Quantization" (papers/zhao2025image.md); official code zhaoyue-zephyrus/bsq-vit,
      transcoder/models/quantizer/bsq.py (BinarySphericalQuantizer, its `l2_norm` mode).
    - The sign quantiser, bit-pattern index and entropy terms are those of LFQ
      (reference_impls/lfq.py, papers/yu2024language.md), reused here with codes of norm 1.

Equations implemented (L bits, encoder width D):
    project     v = W_in z                                 (D -> L)
    normalise   u = v / ||v||                              (u on the unit sphere S^{L-1})
    quantise    uhat = sign(u) / sqrt(L)                   (sign(0) = -1; ||uhat|| = 1: a corner of the cube,
                                                            on the sphere)
                forward uhat, backward straight-through to u
    index       idx = sum_i 2^i [u_i > 0]                  (implicit codebook of 2^L codes, no table)
    decode      W_out uhat                                 (L -> D)
    error       ||u - uhat||^2 = 2 - 2 <u, uhat> = 2 - (2 / sqrt(L)) ||u||_1 <= 2 - 2 / sqrt(L)
                since ||u||_1 >= ||u||_2 = 1; equality when u lies on a coordinate axis. So the
                quantisation error never exceeds sqrt(2 - 2/sqrt(L)) < sqrt(2), whatever the input,
                while unnormalised sign quantisation (LFQ) has no such bound.
    entropy     LFQ's L_ent with codes of magnitude s = 1/sqrt(L): p_i(+ | u) = sigmoid(4 u_i / (sqrt(L) tau))
                (group_size=g sums the codebook entropy over groups of g channels; the official
                quantiser class defaults to g = 9, but the released 256-px 18- and 36-bit configs set
                embed_group_size: 1, one-bit groups; group_size=None here is the exact entropy)
    total       loss = entropy_weight * (H_sample - gamma * H_codebook) + beta * ||u - sg[uhat]||^2

Notation (code -> paper / official code):
    bits      L (embed_dim)          scale     1/sqrt(L) (q_scale)        beta   commitment weight
    gamma     weight of the codebook entropy (official: gamma / gamma0)   temperature  tau (1 / inv_temperature)

Defaults: temperature=0.01 is LFQ's value (reference_impls/lfq.py), not BSQ-ViT's: the released
VITBSQModel uses inv_temperature = 1, i.e. temperature=1.0 here; pass it to match the release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.lfq import (
    codes_to_indices,
    entropy_terms,
    indices_to_codes,
    sign_codes,
)
from reference_impls.vq import from_rows, perplexity, to_rows


def spherical_sign(u: torch.Tensor) -> torch.Tensor:
    """uhat = sign(u) / sqrt(L) for rows u (..., L): the nearest corner of the cube on the unit sphere."""
    return sign_codes(u) / math.sqrt(u.shape[-1])


def quantize_sphere(u: torch.Tensor) -> torch.Tensor:
    """Forward spherical_sign(u), backward identity (straight-through to the unit vector u)."""
    return u + (spherical_sign(u) - u).detach()


def error_bound(bits: int) -> float:
    """sqrt(2 - 2/sqrt(L)): the largest ||u - uhat|| over unit vectors u of L channels."""
    return math.sqrt(2 - 2 / math.sqrt(bits))


@dataclass
class BSQOutput:
    z_q: torch.Tensor  # (B, D, *S) decoded map, straight-through applied
    indices: torch.Tensor  # (B, *S) int64
    codes: torch.Tensor  # (B, *S, L) the spherical codes uhat, each of norm 1
    unit: torch.Tensor  # (B, *S, L) the normalised inputs u
    loss: torch.Tensor
    per_sample_entropy: torch.Tensor
    codebook_entropy: torch.Tensor
    perplexity: torch.Tensor


class BSQ(nn.Module):
    """Binary spherical quantiser of channel-first maps (B, D, *S) with L = `bits` channels on the sphere."""

    def __init__(
        self,
        bits: int,
        dim: int,
        *,
        entropy_weight: float = 0.1,
        gamma: float = 1.0,
        temperature: float = 0.01,
        beta: float = 0.0,
        group_size: int | None = None,
    ):
        super().__init__()
        self.bits, self.codebook_size, self.group_size = bits, 2**bits, group_size
        self.entropy_weight, self.gamma, self.temperature, self.beta = entropy_weight, gamma, temperature, beta
        self.project_in = nn.Linear(dim, bits)
        self.project_out = nn.Linear(bits, dim)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> the map the decoder receives (B, D, *S)."""
        codes = indices_to_codes(indices.reshape(-1), self.bits) / math.sqrt(self.bits)
        return from_rows(self.project_out(codes), tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> BSQOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        u = F.normalize(self.project_in(rows), dim=1)  # (N, L) on the unit sphere
        uhat = spherical_sign(u)  # (N, L), norm 1
        indices = codes_to_indices(uhat)  # (N,)
        zero = u.new_zeros(())
        scale = 1 / math.sqrt(self.bits)
        per_sample, codebook = zero, zero
        if self.training:
            per_sample, codebook = entropy_terms(
                u, temperature=self.temperature, code_scale=scale, group_size=self.group_size
            )
        commitment = F.mse_loss(u, uhat) if self.beta else zero
        loss = self.entropy_weight * (per_sample - self.gamma * codebook) + self.beta * commitment
        z_q = quantize_sphere(u)  # (N, L) straight-through
        out = from_rows(self.project_out(z_q), grid)
        return BSQOutput(
            out,
            indices.reshape(grid),
            uhat.reshape(*grid, -1),
            u.reshape(*grid, -1),
            loss,
            per_sample,
            codebook,
            perplexity(indices, self.codebook_size),
        )
