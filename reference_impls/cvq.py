"""Online clustered codebook (CVQ-VAE): codes re-seeded from the current encoder features with a
weight set by their running usage.

Paper and note:
    - Zheng and Vedaldi 2023, "Online Clustered Codebook", ICCV 2023 (papers/zheng2023online.md).
      Official code: lyndonzheng/CVQ-VAE; this module follows quantise.py (VectorQuantiser) at
      04864b7, with main.py's default anchor ('closest').
    The nearest-code lookup, straight-through and the VQ loss come from vq.py.

Per training step, with the K codes c_k and the N encoder features z_i of the batch:
    lookup and loss (unchanged VQ, on the codes from before this step's re-seeding):
        k_i = argmin_k d(z_i, c_k),   L = ||sg[z] - c_k||^2 + beta ||z - sg[c_k]||^2,   beta = 0.25
    running usage, decay gamma = 0.99, starting at 0:
        p_k = #{i : k_i = k} / N,     N_k <- gamma N_k + (1 - gamma) p_k
    anchor of code k ('closest'): the feature of the batch nearest to it,
        a_k = z_{i*(k)},  i*(k) = argmin_i d(z_i, c_k)
    re-seeding, weight alpha_k from the usage updated in this step:
        alpha_k = exp(-N_k K 10 / (1 - gamma) - 1e-3)
        c_k <- (1 - alpha_k) c_k + alpha_k a_k
    A code no batch chose (N_k = 0) has alpha_k = exp(-1e-3) ~ 0.999 and lands on its anchor; a code
    with uniform usage N_k = 1 / K has alpha_k = exp(-1000), zero in float32, and only the VQ loss
    moves it. d is the cosine distance (main.py's default) or the squared Euclidean distance.

Under torch.distributed the usage counts and N are all-reduced, and each code's anchor is the
nearest feature over every rank (each rank's nearest feature and its distance all-gathered; the
smallest distance wins, the lowest rank on a tie, as argmin over the ranks' concatenated batch
would pick), so N processes keep the codebook of one process fed the whole batch.

Notation (code -> official quantise.py):
    codebook  embedding.weight     usage  embed_prob (N_k)     weight  alpha ('decay' in the code)
    decay     gamma (self.decay)   beta   beta                 anchor  random_feat

Left out: the 'random' (feature pool) and 'probrandom' anchors, the one-time re-seeding
(first_batch) and the optional contrastive loss.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import (
    QuantizerOutput,
    distributed,
    from_rows,
    nearest_code,
    pairwise_sq_distances,
    perplexity,
    straight_through,
    to_rows,
    vq_losses,
)


def code_frequencies(indices: torch.Tensor, num_codes: int, dtype: torch.dtype) -> torch.Tensor:
    """p_k, the fraction of the batch's features that chose code k: (K,). Global under torch.distributed."""
    counts = torch.bincount(indices, minlength=num_codes).to(dtype)  # (K,)
    n = torch.tensor(float(indices.numel()), dtype=dtype)
    if distributed():
        torch.distributed.all_reduce(counts)
        torch.distributed.all_reduce(n)
    return counts / n


def anchor_weight(usage: torch.Tensor, num_codes: int, decay: float) -> torch.Tensor:
    """alpha_k = exp(-N_k K 10 / (1 - gamma) - 1e-3): (K,), ~1 for unused codes, ~0 for used ones."""
    return torch.exp(-(usage * num_codes * 10) / (1 - decay) - 1e-3)


def closest_anchors(z: torch.Tensor, codes: torch.Tensor, *, cosine: bool) -> torch.Tensor:
    """For each code (K, D), the row of z (N, D) nearest to it: (K, D). Over all ranks under
    torch.distributed."""
    zn, cn = (F.normalize(z, dim=1), F.normalize(codes, dim=1)) if cosine else (z, codes)
    best, i = pairwise_sq_distances(zn, cn).min(dim=0)  # (K,), (K,) nearest row per code
    anchors = z[i]  # (K, D) the raw features, as the official code takes them
    if distributed():
        world = torch.distributed.get_world_size()
        all_best = [torch.empty_like(best) for _ in range(world)]
        all_anchors = [torch.empty_like(anchors) for _ in range(world)]
        torch.distributed.all_gather(all_best, best)
        torch.distributed.all_gather(all_anchors, anchors.contiguous())
        rank = torch.stack(all_best).argmin(dim=0)  # (K,) the first rank holding the nearest feature
        anchors = torch.stack(all_anchors)[rank, torch.arange(codes.shape[0])]  # (K, D)
    return anchors


class OnlineClusteredQuantizer(nn.Module):
    """CVQ-VAE's quantiser on channel-first maps (B, D, *S).

    Options (keyword-only): beta (commitment weight), decay (gamma of the usage average),
    distance 'cos' (official default) or 'l2', generator for the initial codebook, drawn as in the
    official code from U(-1/K, 1/K).
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        decay: float = 0.99,
        distance: str = "cos",
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if distance not in ("cos", "l2"):
            raise ValueError(f"distance must be 'cos' or 'l2', got {distance!r}")
        self.num_codes, self.dim, self.beta, self.decay, self.cosine = num_codes, dim, beta, decay, distance == "cos"
        init = (torch.rand(num_codes, dim, generator=generator) * 2 - 1) / num_codes  # U(-1/K, 1/K)
        self.codebook = nn.Parameter(init)  # (K, D)
        self.register_buffer("usage", torch.zeros(num_codes))  # N_k

    @torch.no_grad()
    def reseed(self, z: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Usage EMA, then c_k <- (1 - alpha_k) c_k + alpha_k a_k in place. Returns alpha (K,)."""
        p = code_frequencies(indices, self.num_codes, z.dtype)  # (K,)
        self.usage.mul_(self.decay).add_(p, alpha=1 - self.decay)
        alpha = anchor_weight(self.usage, self.num_codes, self.decay)[:, None]  # (K, 1)
        anchors = closest_anchors(z, self.codebook, cosine=self.cosine)  # (K, D)
        self.codebook.mul_(1 - alpha).add_(alpha * anchors)
        return alpha[:, 0]

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        look = (
            (F.normalize(rows.detach(), dim=1), F.normalize(self.codebook.detach(), dim=1))
            if self.cosine
            else (rows, self.codebook)
        )
        indices = nearest_code(*look)  # (N,)
        z_q = F.embedding(indices, self.codebook)  # (N, D) raw codes, also under the cosine lookup
        codebook_loss, commitment, loss = vq_losses(rows, z_q, self.beta)
        if self.training:
            self.reseed(rows.detach(), indices)  # after z_q and the loss, as the official forward
        out = from_rows(straight_through(rows, z_q), grid)  # (B, D, *S)
        usage = perplexity(indices, self.num_codes)
        return QuantizerOutput(out, indices.reshape(grid), loss, codebook_loss, commitment, usage)
