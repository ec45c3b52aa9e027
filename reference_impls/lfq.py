"""Lookup-free quantisation (LFQ): one sign per channel, the index is the bit pattern, an entropy penalty.

Paper and note:
    - MAGVIT-v2, Yu et al. 2024, "Language Model Beats Diffusion -- Tokenizer is Key to Visual
      Generation" (papers/yu2024language.md). No official code was released; the conventions
      below are compared with lucidrains/vector-quantize-pytorch (lookup_free_quantization.py)
      and the BSQ authors' code in the note's Pitfalls.

Equations implemented (d channels, implicit codebook {-1, 1}^d of K = 2^d codes):
    quantise    q(z)_i = +1 if z_i > 0 else -1                          (0 maps to -1, never to 0)
    index       idx(z) = sum_i 2^i [z_i > 0]                            (channel 0 is the least significant bit)
    gradient    straight-through: z + sg[q(z) - z]
    soft code   p(c | z) = softmax_c(-||z - c||^2 / tau),  c in s * {-1, 1}^d
                which factorises over channels: p_i(c_i = +s | z) = sigmoid(4 s z_i / tau)
    entropy     L_ent = E_z[H(p(. | z))] - gamma * H(E_z[p(. | z)])
                the first term (per-sample entropy) pushes each z to one code, the second (the
                entropy of the batch's average code distribution) pushes the batch to spread over
                the codebook; minimising L_ent does both.
    total       loss = entropy_weight * L_ent + beta * ||z - sg[q(z)]||^2

The per-sample entropy is the exact sum of per-channel binary entropies. The codebook entropy is
computed exactly over all 2^d codes, through log p(c | z) = sum_i log sigmoid(-a_i) + bits(c) . a,
a_i = 4 s z_i / tau, one (N, d) @ (d, 2^d) product; this limits d to `MAX_EXACT_BITS`. With group_size=g
the codebook entropy is summed over groups of g channels instead (the approximation BSQ uses for
large L; by subadditivity of entropy it never falls below the exact value).

Notation (code -> paper / lucidrains):
    bits        d = log2 K                   temperature   tau (lucidrains: 1 / inv_temperature, default 100)
    gamma       weight of the codebook entropy (lucidrains: diversity_gamma)
    code_scale  s, the magnitude of a code (1 for LFQ; 1/sqrt(d) for BSQ, reference_impls/bsq.py)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.vq import from_rows, perplexity, to_rows

MAX_EXACT_BITS = 16


def sign_codes(z: torch.Tensor) -> torch.Tensor:
    """q(z): +1 where z > 0, -1 elsewhere (including 0), same shape and dtype as z."""
    return torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))


def _place_values(bits: int, device=None) -> torch.Tensor:
    return 2 ** torch.arange(bits, device=device)  # (d,) 1, 2, 4, ...


def codes_to_indices(codes: torch.Tensor) -> torch.Tensor:
    """(..., d) signs -> (...,) int64: the binary number whose bit i is [code_i > 0]."""
    return ((codes > 0).long() * _place_values(codes.shape[-1], codes.device)).sum(dim=-1)


def indices_to_bits(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """(...,) int64 -> (..., d) in {0, 1}: bit i of each index."""
    return (indices.unsqueeze(-1) // _place_values(bits, indices.device)) % 2


def indices_to_codes(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """(...,) int64 -> (..., d) in {-1, 1}; the inverse of codes_to_indices."""
    return indices_to_bits(indices, bits).float() * 2 - 1


def _codebook_entropy(a: torch.Tensor) -> torch.Tensor:
    """H(mean_n p(. | z_n)) over all 2^d codes, from the per-channel logits a (N, d)."""
    d = a.shape[1]
    bits = indices_to_bits(torch.arange(2**d, device=a.device), d).to(a.dtype)  # (K, d)
    log_p = F.logsigmoid(-a).sum(dim=1, keepdim=True) + a @ bits.t()  # (N, K) log p(c_k | z_n)
    avg = log_p.exp().mean(dim=0)  # (K,) the batch's code distribution
    return -(avg * torch.log(avg.clamp_min(1e-30))).sum()


def entropy_terms(
    z: torch.Tensor, *, temperature: float, code_scale: float = 1.0, group_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample entropy, codebook entropy) of the soft assignment of rows z (N, d), in nats.

    per-sample: mean_n H(p(. | z_n)), exact (it factorises over channels).
    codebook:   H(mean_n p(. | z_n)) over the 2^d codes; with group_size=g, the sum of the exact
                entropies of the d/g groups of g consecutive channels, an upper bound that equals
                the exact value when the groups are independent over the batch (BSQ's approximation).
    """
    d = z.shape[1]
    g = group_size or d
    if d % g:
        raise ValueError(f"group_size {g} does not divide the {d} bits; expected a divisor of {d}")
    if g > MAX_EXACT_BITS:
        raise ValueError(
            f"exact codebook entropy needs 2^{g} probabilities per row; use at most {MAX_EXACT_BITS} bits per group"
        )
    a = 4 * code_scale * z / temperature  # (N, d) logit of c_i = +s
    per_sample = (
        (F.softplus(a) - a * torch.sigmoid(a)).sum(dim=1).mean()
    )  # binary entropy H_b(sigmoid(a)) summed over channels
    codebook = sum(_codebook_entropy(part) for part in a.split(g, dim=1))
    return per_sample, codebook


@dataclass
class LFQOutput:
    z_q: torch.Tensor  # (B, D, *S) quantised map, straight-through applied
    indices: torch.Tensor  # (B, *S) int64
    loss: torch.Tensor  # entropy_weight * L_ent + beta * commitment
    per_sample_entropy: torch.Tensor
    codebook_entropy: torch.Tensor
    perplexity: torch.Tensor


class LFQ(nn.Module):
    """Lookup-free quantiser of channel-first maps (B, D, *S) with d = `bits` channels.

    dim=D adds D -> d and d -> D projections around the quantiser; dim=None expects d channels.
    The entropy penalty is computed in training mode only (it needs the batch).
    """

    def __init__(
        self,
        bits: int,
        *,
        dim: int | None = None,
        entropy_weight: float = 0.1,
        gamma: float = 1.0,
        temperature: float = 0.01,
        beta: float = 0.0,
        group_size: int | None = None,
    ):
        super().__init__()
        self.bits, self.codebook_size, self.group_size = bits, 2**bits, group_size
        self.entropy_weight, self.gamma, self.temperature, self.beta = entropy_weight, gamma, temperature, beta
        self.project_in = nn.Linear(dim, bits) if dim and dim != bits else nn.Identity()
        self.project_out = nn.Linear(bits, dim) if dim and dim != bits else nn.Identity()

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> the map the decoder receives (B, D, *S)."""
        rows = self.project_out(indices_to_codes(indices.reshape(-1), self.bits))
        return from_rows(rows, tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> LFQOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        z = self.project_in(rows)  # (N, d)
        codes = sign_codes(z)  # (N, d)
        indices = codes_to_indices(codes)  # (N,)
        zero = z.new_zeros(())
        per_sample, codebook = (
            entropy_terms(z, temperature=self.temperature, group_size=self.group_size)
            if self.training
            else (zero, zero)
        )
        commitment = F.mse_loss(z, codes) if self.beta else zero
        loss = self.entropy_weight * (per_sample - self.gamma * codebook) + self.beta * commitment
        z_q = z + (codes - z).detach()  # straight-through
        out = from_rows(self.project_out(z_q), grid)
        return LFQOutput(
            out, indices.reshape(grid), loss, per_sample, codebook, perplexity(indices, self.codebook_size)
        )
