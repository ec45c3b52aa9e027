"""Residual vector quantisation (RQ / RVQ): a stack of D codes per position, coarse to fine.

Papers and notes:
    - RQ-VAE, Lee et al. 2022 (papers/lee2022autoregressive.md): residual quantisation of depth D
      with one codebook shared by all depths, and the commitment loss on the partial sums.
    - SoundStream, Zeghidour et al. 2022 (papers/zeghidour2022soundstream.md): one codebook per
      level and quantizer dropout, so one model serves every bitrate n_q = 1 .. N_q.
    - AudioLM, Borsos et al. 2023 (papers/borsos2023audiolm.md): its acoustic tokens are the RVQ
      levels of a SoundStream codec, split into coarse (first Q') and fine (the rest) levels.

Equations implemented (RQ-VAE residual quantisation; SoundStream residual vector quantizer):
    r_0 = z
    k_d = argmin_k ||r_{d-1} - e_d(k)||_2                   (nearest code of the residual)
    r_d = r_{d-1} - e_d(k_d),         d = 1 .. D
    z_hat^(d) = sum_{i <= d} e_i(k_i)                        (partial sum; z_hat = z_hat^(D))
    e_d = e for every d when the codebook is shared (RQ-VAE).
    Loss (RQ-VAE's commitment over partial sums):
        commitment = sum_d ||z - sg[z_hat^(d)]||^2
        codebook   = sum_d ||sg[r_{d-1}] - e_d(k_d)||^2      (gradient version of the EMA update)
        loss       = codebook + beta * commitment
    Quantizer dropout (SoundStream): during training n_q ~ Uniform{1, .., N_q} and only the
    first n_q levels are used; at inference n_q is set by the bitrate.

Notation (code -> paper):
    depth        D (RQ-VAE) / N_q (SoundStream)        n_q         n_q, the active levels
    codebooks    e (shared) / the N_q codebooks         indices     (k_1, .., k_D) per position
    residual     r_d                                    partial     z_hat^(d)

Simplifications: codebooks learn by the codebook loss above, not by the EMA updates with
dead-code restarts used in practice; one n_q is drawn per forward call (per batch), through the
generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import nearest_code, perplexity, straight_through, vq_losses


@dataclass
class RVQOutput:
    z_q: torch.Tensor  # (B, C, *S) sum of the selected codes, straight-through applied
    indices: torch.Tensor  # (B, *S, n_q) int64, level-minor code stack
    loss: torch.Tensor  # codebook + beta * commitment
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    partial_sums: list[torch.Tensor]  # n_q tensors (B, C, *S): z_hat^(1) .. z_hat^(n_q), no straight-through
    perplexity: torch.Tensor  # of the first level's codes


def residual_quantize(
    z: torch.Tensor,
    codebooks: list[torch.Tensor],
    *,
    lookups: list[Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Greedy residual quantisation of rows z (N, C) with one (K, C) codebook per level.

    lookups: optional per-level functions residual (N, C) -> indices (N,) that replace the
    Euclidean nearest-code search (DAC, reference_impls/dac.py, chooses by cosine in a projected
    space); the level still subtracts `codebooks[d][k]`.
    Returns indices (N, n_q) and the list of selected code rows per level, each (N, C).
    """
    residual = z
    indices, codes = [], []
    for d, codebook in enumerate(codebooks):
        k = lookups[d](residual) if lookups else nearest_code(residual, codebook)  # (N,)
        e = F.embedding(k, codebook)  # (N, C)
        residual = residual - e  # r_d = r_{d-1} - e(k_d)
        indices.append(k)
        codes.append(e)
    return torch.stack(indices, dim=1), codes  # (N, n_q)


def sample_num_quantizers(max_levels: int, generator: torch.Generator | None = None) -> int:
    """Quantizer dropout: n_q ~ Uniform{1, .., max_levels}."""
    return int(torch.randint(1, max_levels + 1, (1,), generator=generator))


class ResidualVQ(nn.Module):
    """Residual quantiser of channel-first maps (B, C, *S) with `depth` levels.

    shared_codebook=True gives RQ-VAE (one (K, C) codebook for every depth); False gives one
    codebook per level (SoundStream). quantizer_dropout=True samples n_q during training when
    forward is called without an explicit n_q.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        depth: int,
        shared_codebook: bool = True,
        beta: float = 0.25,
        quantizer_dropout: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_codes, self.dim, self.depth = num_codes, dim, depth
        self.shared_codebook, self.beta = shared_codebook, beta
        self.quantizer_dropout, self.generator = quantizer_dropout, generator
        n_books = 1 if shared_codebook else depth
        self.codebook = nn.Parameter(torch.randn(n_books, num_codes, dim, generator=generator))  # (books, K, C)

    def codebooks(self, n_q: int) -> list[torch.Tensor]:
        """The (K, C) codebooks of the first n_q levels."""
        if self.shared_codebook:
            return [self.codebook[0]] * n_q
        return [self.codebook[d] for d in range(n_q)]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S, n_q) -> sum of the selected codes (B, C, *S)."""
        n_q = indices.shape[-1]
        out = sum(F.embedding(indices[..., d], book) for d, book in enumerate(self.codebooks(n_q)))  # (B, *S, C)
        return out.movedim(-1, 1)

    def forward(self, z_e: torch.Tensor, n_q: int | None = None) -> RVQOutput:
        if n_q is None:
            use_dropout = self.training and self.quantizer_dropout
            n_q = sample_num_quantizers(self.depth, self.generator) if use_dropout else self.depth
        if not 1 <= n_q <= self.depth:
            raise ValueError(f"n_q must be in [1, {self.depth}], got {n_q}")
        b, c = z_e.shape[:2]
        spatial = tuple(z_e.shape[2:])
        rows = z_e.movedim(1, -1).reshape(-1, c)  # (N, C)
        indices, codes = residual_quantize(rows.detach(), self.codebooks(n_q))  # (N, n_q)
        # recompute the selected codes from the parameters so the codebook loss reaches them
        codes = [F.embedding(indices[:, d], book) for d, book in enumerate(self.codebooks(n_q))]
        codebook_loss = rows.new_zeros(())
        commitment_loss = rows.new_zeros(())
        residual, partial, partials = rows, torch.zeros_like(rows), []
        for e in codes:
            cb, _, _ = vq_losses(residual, e, self.beta)  # ||sg[r_{d-1}] - e(k_d)||^2
            partial = partial + e  # z_hat^(d)
            _, commit, _ = vq_losses(rows, partial, self.beta)  # ||z - sg[z_hat^(d)]||^2
            codebook_loss = codebook_loss + cb
            commitment_loss = commitment_loss + commit
            residual = residual - e.detach()
            partials.append(partial.detach().reshape(b, *spatial, c).movedim(-1, 1))
        z_q = straight_through(rows, partial).reshape(b, *spatial, c).movedim(-1, 1)  # (B, C, *S)
        return RVQOutput(
            z_q=z_q,
            indices=indices.reshape(b, *spatial, n_q),
            loss=codebook_loss + self.beta * commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            partial_sums=partials,
            perplexity=perplexity(indices[:, 0], self.num_codes),
        )


def stack_to_sequence(indices: torch.Tensor) -> torch.Tensor:
    """(B, H, W, D) code stack -> (B, H*W*D) sequence, raster order over positions, depth inner
    (the order RQ-Transformer generates: all D codes of a position before the next position)."""
    return indices.reshape(indices.shape[0], -1)


def sequence_to_stack(seq: torch.Tensor, grid: tuple[int, ...], depth: int) -> torch.Tensor:
    """Inverse of stack_to_sequence: (B, prod(grid)*D) -> (B, *grid, D)."""
    return seq.reshape(seq.shape[0], *grid, depth)
