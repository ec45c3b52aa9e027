"""VQGAN-LC: a frozen code table built from pretrained features and one trained projector for all codes.

Paper and note:
    - VQGAN-LC, Zhu et al. 2024, "Scaling the Codebook Size of VQGAN to 100,000 with a Utilization
      Rate of 99%" (papers/zhu2024scaling.md); official code zh460045050/VQGAN-LC, whose
      `vqgan-gpt-lc/models/models_vq.py` (`quantize`, `tuning_codebook 0`, `use_cblinear 1`) and
      `codebook_generation/minibatch_kmeans_per_class.py` this module follows.

Mechanism:
    table       T (K, D_t): k-means centres of features of a frozen pretrained image encoder (the
                official scripts cluster CLIP patch features class by class, k centres per class,
                and concatenate); here the features are passed in, so any seeded stand-in works,
                and the clustering is `reference_impls.ar_prior.kmeans`.
    projector   P: R^{D_t} -> R^d, one nn.Linear (with bias) trained with the autoencoder; the
                table itself never changes (a buffer: no gradient, no optimiser state).
    codes       e_k = P(T_k),   E = P(T) (K, d)
    lookup      k_i = argmin_k ||z_i - e_k||^2,   z_q,i = e_{k_i}                (VQ-VAE Eq. 1-2)
    loss        L_q = ||sg[z_q] - z||^2 + 0.33 ||z_q - sg[z]||^2
                (the official weights: 1 on the commitment term, which moves the encoder, and 0.33
                 on the codebook term, which here moves only the projector)
    output      z + sg[z_q - z]                                      (straight-through estimator)

Because every code is the image of a fixed row under the same P, a gradient step on P moves every
code, chosen in this batch or not; a code cannot be left behind where no encoder output reaches it,
which is what keeps the utilisation of the 100,000-entry codebook near 100 %.

Notation (code -> paper / official code):
    table           the initialised codebook, `tok_embeddings.weight` (frozen)
    projector       the codebook projector, `codebook_projection`
    codes()         `tok_embeddings_weight` after the projection
    codebook_weight 0.33 in `quantize`;  commitment_weight 1 (there is no beta argument)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import kmeans
from reference_impls.vq import (
    QuantizerOutput,
    from_rows,
    nearest_code,
    perplexity,
    straight_through,
    to_rows,
    vq_losses,
)


def init_code_table(
    features: torch.Tensor,
    k: int,
    *,
    labels: torch.Tensor | None = None,
    n_iters: int = 20,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The frozen code table from features (N, D_t): k-means centres, (k, D_t) or (C * k, D_t).

    labels=None: one k-means with k centres over all features.
    labels (N,): k centres per class, concatenated in class order (the official codebook is
    1,000 ImageNet classes x 100 centres).
    """
    if labels is None:
        return kmeans(features, k, n_iters=n_iters, generator=generator)[0]  # (k, D_t)
    tables = [kmeans(features[labels == c], k, n_iters=n_iters, generator=generator)[0] for c in labels.unique()]
    return torch.cat(tables)  # (C * k, D_t)


def code_usage(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Fraction of the K codes chosen at least once by these indices (the paper's utilisation rate)."""
    return (torch.bincount(indices.reshape(-1), minlength=num_codes) > 0).float().mean()


class FrozenTableVQ(nn.Module):
    """Quantise channel-first maps (B, d, *S) against codes e = P(T): a frozen table T, a trained P.

    Options (keyword-only):
        table              (K, D_t) the frozen table, stored as a buffer.
        dim                d, the quantiser's (encoder output) dimension.
        codebook_weight    weight of ||z_q - sg[z]||^2, the term that trains P (official: 0.33).
        commitment_weight  weight of ||sg[z_q] - z||^2, the term that trains the encoder (official: 1).
        projector_std      std of the projector's normal weight init (official: d^-0.5, the
                           default); the bias keeps nn.Linear's uniform(+-1/sqrt(D_t)) law. Both
                           are drawn from `generator`.
    """

    def __init__(
        self,
        *,
        table: torch.Tensor,
        dim: int,
        codebook_weight: float = 0.33,
        commitment_weight: float = 1.0,
        projector_std: float | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_codes, self.table_dim = table.shape
        self.dim = dim
        self.codebook_weight, self.commitment_weight = codebook_weight, commitment_weight
        self.register_buffer("table", table.detach().clone())  # (K, D_t), never trained
        self.projector = nn.Linear(self.table_dim, dim)  # P
        std = dim**-0.5 if projector_std is None else projector_std
        bound = self.table_dim**-0.5
        with torch.no_grad():
            self.projector.weight.copy_(torch.randn(dim, self.table_dim, generator=generator) * std)
            self.projector.bias.copy_((2 * torch.rand(dim, generator=generator) - 1) * bound)

    def codes(self) -> torch.Tensor:
        """The projected codebook E = P(T): (K, d). Depends on P only; T is a constant."""
        return self.projector(self.table)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> quantised map (B, d, *S)."""
        return from_rows(F.embedding(indices.reshape(-1), self.codes()), tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        z, grid = to_rows(z_e)  # (N, d)
        codes = self.codes()  # (K, d)
        indices = nearest_code(z, codes)  # (N,)
        z_q = F.embedding(indices, codes)  # (N, d), differentiable in P
        codebook_loss, commitment_loss, _ = vq_losses(z, z_q, beta=0.0)
        loss = self.codebook_weight * codebook_loss + self.commitment_weight * commitment_loss
        out = from_rows(straight_through(z, z_q), grid)  # (B, d, *S)
        return QuantizerOutput(
            out,
            indices.reshape(grid),
            loss,
            codebook_loss,
            commitment_loss,
            perplexity(indices, self.num_codes),
        )
