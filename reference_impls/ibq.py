"""IBQ: index backpropagation quantisation, a straight-through estimator on the softmax over all codes.

Paper and note:
    - IBQ, Shi et al. 2025, "Scalable Image Tokenization with Index Backpropagation Quantization"
      (papers/shi2025scalable.md); official code TencentARC/SEED-Voken, whose
      `src/IBQ/modules/vqvae/quantize.py` (class IndexPropagationQuantize) and
      `configs/IBQ/gpu/imagenet_ibqgan_*.yaml` this module follows.

Mechanism (codebook C (K, d), encoder output z (N, d)):
    logits      l = z C^T                      (official: a dot product; see `logits` below)
    soft        s = softmax(l)                 over all K codes
    hard        h = one_hot(argmax_k l)
    one-hot     o = h - sg[s] + s              value h, gradient that of s
    quantised   z_q = o C                      value C[k]: the hard lookup; no z + sg[z_q - z]
    loss        L_q = ||z_q - z||^2 + ||sg[z_q^h] - z||^2 + beta ||z_q^h - sg[z]||^2,  z_q^h = h C,
                beta = 0.25 (official; note that beta weights the codebook term, not the commitment)

The decoder's gradient g at z_q reaches C directly through o C (row k only: o has the value h) and
through s, which depends on every code: d l_j / d c_j = z, so every code receives gradient at every
step, where plain VQ gives the unchosen codes none. The encoder's gradient too passes through s
(dL/dz = C^T (diag(s) - s s^T) C g for dot logits), not through an identity copy.

z_q is computed as h C + (s - sg[s]) C: the second term is exactly zero in value, so the forward is
bit-for-bit the hard lookup, and its gradients equal those of (h - sg[s] + s) C
(tests/reference_impls/test_ibq.py proves both).

logits="dot" (official) scores codes by z . c_k, whose argmax is the nearest code only when all codes
have the same norm; logits="distance" scores them by -||z - c_k||^2, whose argmax is exactly VQ's
nearest code (reference_impls.vq.nearest_code). The official entropy loss (weight 0.05 in the
262,144-code config) is left out.

Notation (code -> official code):
    codebook   `embedding.weight`     soft, hard, one_hot   `soft_one_hot`, `hard_one_hot`, `one_hot`
    z_q, z_q_hard                     `z_q`, `z_q_2`
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import from_rows, pairwise_sq_distances, perplexity, to_rows, vq_losses


def code_logits(z: torch.Tensor, codebook: torch.Tensor, kind: str = "dot") -> torch.Tensor:
    """Scores of every code for rows z (N, d) against codes (K, d): (N, K)."""
    if kind == "dot":
        return z @ codebook.t()  # (N, K) z . c_k
    if kind == "distance":
        return -pairwise_sq_distances(z, codebook)  # (N, K) -||z - c_k||^2
    raise ValueError(f"logits must be 'dot' or 'distance', got {kind!r}")


def index_backprop_one_hot(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, K) logits -> (hard one-hot h, soft s, indices (N,)); the STE one-hot is h + (s - sg[s])."""
    soft = logits.softmax(dim=1)  # (N, K)
    indices = soft.argmax(dim=1)  # (N,)
    hard = F.one_hot(indices, logits.shape[1]).to(soft.dtype)  # (N, K)
    return hard, soft, indices


@dataclass
class IBQOutput:
    z_q: torch.Tensor  # (B, d, *S) the hard codes in value; gradient through the softmax
    indices: torch.Tensor  # (B, *S)
    loss: torch.Tensor  # the three-term quantisation loss
    soft_loss: torch.Tensor  # ||z_q - z||^2 (z_q with the soft gradient)
    codebook_loss: torch.Tensor  # ||z_q^h - sg[z]||^2
    commitment_loss: torch.Tensor  # ||sg[z_q^h] - z||^2
    perplexity: torch.Tensor


class IBQ(nn.Module):
    """Index backpropagation quantiser for channel-first maps (B, d, *S) with K trained codes.

    Options (keyword-only): beta (0.25), logits ("dot", official, or "distance"). The codebook is
    initialised N(0, 1) like the official nn.Embedding, drawn from `generator`.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        logits: str = "dot",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        code_logits(torch.zeros(1, dim), torch.zeros(1, dim), logits)  # validate the option early
        self.num_codes, self.dim, self.beta, self.logits = num_codes, dim, beta, logits
        self.codebook = nn.Parameter(torch.randn(num_codes, dim, generator=generator))  # C (K, d)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> quantised map (B, d, *S)."""
        return from_rows(F.embedding(indices.reshape(-1), self.codebook), tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> IBQOutput:
        z, grid = to_rows(z_e)  # (N, d)
        hard, soft, indices = index_backprop_one_hot(code_logits(z, self.codebook, self.logits))
        z_q_hard = F.embedding(indices, self.codebook)  # (N, d) h C
        z_q = z_q_hard + (soft - soft.detach()) @ self.codebook  # (N, d) value h C, gradient of (h - sg[s] + s) C
        soft_loss = F.mse_loss(z_q, z)
        codebook_loss, commitment_loss, _ = vq_losses(z, z_q_hard, beta=0.0)
        loss = soft_loss + commitment_loss + self.beta * codebook_loss
        return IBQOutput(
            from_rows(z_q, grid),
            indices.reshape(grid),
            loss,
            soft_loss,
            codebook_loss,
            commitment_loss,
            perplexity(indices, self.num_codes),
        )
