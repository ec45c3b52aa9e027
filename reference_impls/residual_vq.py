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

Two forms of the per-level quantiser (the values agree, the encoder gradients do not):
    ResidualVQ       the losses above: a gradient codebook, the commitment to every partial sum, one
                     straight-through from z_hat to z. The encoder receives the decoder's gradient
                     once plus beta * sum_d 2 (z - z_hat^(d)) / (N C): every level's commitment.
    EncodecRVQ       the released EnCodec form (encodec/quantization/core_vq.py
                     ResidualVectorQuantization, VectorQuantization, EuclideanCodebook):
        per level    EMA codebook (vq.ema_update: decay 0.99, Laplace eps 1e-5), initialised by
                     k-means (50 iterations) on the level's input of the first training batch
        per level    straight-through q_d~ = r_{d-1} + sg[q_d - r_{d-1}],  r_d = r_{d-1} - q_d~
        loss         mean_d ||r_{d-1} - sg[q_d]||^2       (commitment_weight 1; vq.py penalty = mean)
                     Since r_d = r_{d-1} - q_d~ has the value r_{d-1} - q_d but zero derivative in
                     r_{d-1}, levels d >= 2 see inputs with no path to the encoder: the encoder
                     receives the decoder's gradient once and only level 1's commitment,
                     2 (z - z_hat^(1)) / (N C n_q) (acknowledged in facebookresearch/encodec
                     issue 25; the code keeps it "for reproducibility", with a warning).
    Under torch.distributed the k-means sums and counts and the EMA statistics are all-reduced
    (vq.distributed(), vq.ema_update), and the k-means starting rows are drawn from the global
    batch, so N processes fed shards keep the codebooks of one process fed the whole batch. (core_vq.py
    itself runs k-means on each rank's own batch and broadcasts rank 0's buffers, and takes the EMA step
    from each rank's batch alone.)
    The released dead-code expiry (threshold_ema_dead_code=2) is left out: it rewrites rows of
    `embed` that the EMA step of the same call overwrites from embed_avg, so it never changes
    the codebook (see papers/defossez2023high.md, Pitfalls).

Simplifications: one n_q is drawn per forward call (per batch), through the generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import distributed, ema_update, nearest_code, perplexity, straight_through, vq_losses


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


# ----------------------------------------------------------------------------- EnCodec's released form


def global_offset(n_local: int) -> tuple[int, int]:
    """(offset of this rank's rows in the global batch, global batch size); (0, n_local) alone."""
    if not distributed():
        return 0, n_local
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(sizes, torch.tensor([n_local]))
    sizes = [int(t) for t in sizes]
    return sum(sizes[: torch.distributed.get_rank()]), sum(sizes)


def sample_rows(samples: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """num rows of the global batch (N, C), drawn as core_vq.sample_vectors draws them (a random
    permutation's first num if N >= num, with replacement otherwise); each rank fills the rows it
    holds and an all-reduce assembles them, so every rank gets the rows one process would."""
    offset, total = global_offset(samples.shape[0])
    if total >= num:
        idx = torch.randperm(total, generator=generator)[:num]
    else:
        idx = torch.randint(0, total, (num,), generator=generator)
    idx = idx.to(samples.device)
    mine = (idx >= offset) & (idx < offset + samples.shape[0])
    rows = samples.new_zeros(num, samples.shape[1])
    rows[mine] = samples[idx[mine] - offset]
    if distributed():
        torch.distributed.all_reduce(rows)
    return rows


def kmeans(
    samples: torch.Tensor, num_clusters: int, *, iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of rows (N, C) as core_vq.kmeans: (means (K, C), counts (K,) of the last assignment).

    A cluster left empty keeps its previous mean. Counts and sums are all-reduced under torch.distributed.
    """
    means = sample_rows(samples, num_clusters, generator)  # (K, C)
    bins = samples.new_zeros(num_clusters)
    for _ in range(iters):
        buckets = nearest_code(samples, means)  # (N,)
        bins = torch.bincount(buckets, minlength=num_clusters).to(samples.dtype)  # (K,)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)  # (K, C)
        if distributed():
            torch.distributed.all_reduce(bins)
            torch.distributed.all_reduce(sums)
        empty = bins == 0
        means = torch.where(empty[:, None], means, sums / bins.clamp_min(1)[:, None])
    return means, bins


class EncodecRVQ(nn.Module):
    """EnCodec's released residual quantiser: per-level EMA codebooks with k-means initialisation and a
    per-level straight-through (see the module docstring). forward(z_e (B, C, *S), n_q) -> RVQOutput with
    loss = commitment_loss = mean over levels of ||r_{d-1} - sg[q_d]||^2 and codebook_loss = 0."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        depth: int,
        *,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_iters: int = 50,
        commitment_weight: float = 1.0,
        quantizer_dropout: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_codes, self.dim, self.depth = num_codes, dim, depth
        self.decay, self.eps, self.kmeans_iters, self.commitment_weight = decay, eps, kmeans_iters, commitment_weight
        self.quantizer_dropout, self.generator = quantizer_dropout, generator
        self.register_buffer("codebook", torch.zeros(depth, num_codes, dim))  # (N_q, K, C) embed
        self.register_buffer("cluster_size", torch.zeros(depth, num_codes))  # N_k per level
        self.register_buffer("embed_sum", torch.zeros(depth, num_codes, dim))  # embed_avg per level
        self.register_buffer("inited", torch.zeros(depth, dtype=torch.bool))

    def codebooks(self, n_q: int) -> list[torch.Tensor]:
        return [self.codebook[d] for d in range(n_q)]

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S, n_q) -> sum of the selected codes (B, C, *S)."""
        out = sum(F.embedding(indices[..., d], self.codebook[d]) for d in range(indices.shape[-1]))
        return out.movedim(-1, 1)

    @torch.no_grad()
    def init_level(self, d: int, rows: torch.Tensor) -> None:
        """k-means on level d's input rows (N, C); core_vq.init_embed_ (counts = the k-means bins)."""
        means, bins = kmeans(rows, self.num_codes, iters=self.kmeans_iters, generator=self.generator)
        self.codebook[d].copy_(means)
        self.embed_sum[d].copy_(means)
        self.cluster_size[d].copy_(bins)
        self.inited[d] = True

    def forward(self, z_e: torch.Tensor, n_q: int | None = None) -> RVQOutput:
        if n_q is None:
            use_dropout = self.training and self.quantizer_dropout
            n_q = sample_num_quantizers(self.depth, self.generator) if use_dropout else self.depth
        if not 1 <= n_q <= self.depth:
            raise ValueError(f"n_q must be in [1, {self.depth}], got {n_q}")
        b, c = z_e.shape[:2]
        spatial = tuple(z_e.shape[2:])
        residual = z_e.movedim(1, -1).reshape(-1, c)  # r_0 = z (N, C)
        out, partial, partials, indices, commits = 0.0, torch.zeros_like(residual), [], [], []
        for d in range(n_q):
            if not self.inited[d]:
                self.init_level(d, residual.detach())
            k = nearest_code(residual.detach(), self.codebook[d])  # (N,)
            q = F.embedding(k, self.codebook[d])  # (N, C), the codes from before this step's update
            if self.training:
                with torch.no_grad():
                    books = self.codebook[d], self.cluster_size[d], self.embed_sum[d]  # views, updated in place
                    ema_update(*books, residual.detach(), k, self.decay, self.eps)
            q_st = residual + (q - residual).detach()  # per-level straight-through
            commits.append(F.mse_loss(q_st.detach(), residual))  # ||r_{d-1} - sg[q_d]||^2
            residual = residual - q_st  # value r_{d-1} - q_d, derivative 0 in r_{d-1}
            out = out + q_st
            partial = partial + q
            partials.append(partial.reshape(b, *spatial, c).movedim(-1, 1))
            indices.append(k)
        idx = torch.stack(indices, dim=1)  # (N, n_q)
        commitment = torch.stack(commits).mean()
        return RVQOutput(
            z_q=out.reshape(b, *spatial, c).movedim(-1, 1),
            indices=idx.reshape(b, *spatial, n_q),
            loss=self.commitment_weight * commitment,
            codebook_loss=commitment.new_zeros(()),
            commitment_loss=commitment,
            partial_sums=partials,
            perplexity=perplexity(idx[:, 0], self.num_codes),
        )
