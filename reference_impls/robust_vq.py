"""Robust VQ training: batch norm before the quantiser, a 10x codebook learning rate, k-means re-estimation.

Paper and note:
    - Robust Training of Vector Quantized Bottleneck Models, Lancucki et al. 2020 (IJCNN)
      (papers/lancucki2020robust.md); official code: distsup/DistSup, distsup/modules/bottlenecks.py
      (`ReservoirSampler`, `VQBottleneck.reestimate`, `VQBottleneck.forward`), distsup/trainer.py
      (the `codebook_lr` parameter group) and egs/robustvq/yamls, which this module follows.
    The lookup, losses and straight-through gradient come from vq.py (VectorQuantizer) and the
    k-means from ar_prior.py (`kmeans`).

The three remedies (all three on in egs/robustvq/yamls/wsj_datadep_codebooklr_bn.yaml):
    1. batch norm   x <- BN(x) on the encoder outputs (per channel, batch statistics), then a linear
                    projection to the code dimension, then VQ (bottlenecks.py VQBottleneck.forward:
                    `normalization: batch_norm`, `projection`).
    2. codebook lr  Adam with two parameter groups: the codebook at lr_c = 10 lr, the rest at lr
                    (trainer.py; the yamls pair codebook_lr / learning_rate as 0.005 / 0.0005,
                    0.01 / 0.001 and 0.02 / 0.002).
    3. re-estimation
        reservoir   Algorithm R over the stream of (projected) encoder outputs x_1, x_2, ...:
                    the first n rows fill the reservoir; row t > n (1-based) replaces slot j of
                    it, j ~ U{1 .. t}, when j <= n; every x_t is then held with probability n / t
                    after t rows (bottlenecks.py ReservoirSampler.add).
        k-means     e_1 .. e_K <- the K k-means centroids of the reservoir; the WHOLE codebook is
                    replaced, used codes as well as dead ones, and the reservoir is emptied
                    (VQBottleneck.reestimate; sklearn `cluster.k_means` there, Lloyd's algorithm
                    from ar_prior.kmeans here). It is skipped while the reservoir holds fewer than
                    K rows.
    The schedule (when to call `reestimate`) is the caller's: DistSup re-estimates at the start
    of each epoch from the epoch quantisation is enforced and stops after `reestimate_max_epochs`.

Under torch.distributed every batch statistic is that of the global batch, so N processes keep
the model of one process fed the concatenated batch: batch norm all-reduces its sums
(differentiably, so gradients also match), the reservoir gathers every rank's rows in rank order
and takes rank 0's random draws (broadcast), and k-means runs on rank 0 with the caller's
generator, its centroids broadcast. DistSup itself ran on one process and does none of this.

Notation (code -> paper / DistSup):
    reservoir    the reservoir (ReservoirSampler)       size       n (reestimation_reservoir_size, 20480)
    seen         t, rows offered so far (ReservoirSampler.i)
    codebook     e, K x d codewords (embedding.weight)  num_codes  K (num_tokens)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls.ar_prior import kmeans
from reference_impls.vq import QuantizerOutput, VectorQuantizer, distributed, from_rows, to_rows


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows (N_r, D) of every rank, concatenated in rank order: (sum_r N_r, D). Ranks may hold
    different numbers of rows (they are padded to the largest for the all_gather). Without a
    process group, the rows themselves."""
    if not distributed():
        return rows
    world = torch.distributed.get_world_size()
    count = torch.tensor([rows.shape[0]])
    counts = [torch.zeros_like(count) for _ in range(world)]
    torch.distributed.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = rows.new_zeros(longest, rows.shape[1])  # (N_max, D)
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)])  # (sum N_r, D)


class ReservoirSampler(nn.Module):
    """A uniform sample of at most `size` rows of the stream offered to `add` (Algorithm R).

    After t rows have been offered, each of them is in the reservoir with probability
    min(1, size / t), whatever the batch sizes. The draws come from `generator`; under
    torch.distributed rows are gathered from every rank and rank 0's draws are broadcast, so every
    rank holds the reservoir of one process fed the global stream.
    """

    def __init__(self, size: int, dim: int, *, generator: torch.Generator | None = None):
        super().__init__()
        self.size, self.generator = size, generator
        self.register_buffer("buffer", torch.zeros(size, dim))  # (n, D)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))  # t

    def reset(self) -> None:
        self.seen.zero_()

    def contents(self) -> torch.Tensor:
        """The rows held: (min(t, n), D)."""
        return self.buffer[: min(int(self.seen), self.size)]

    @torch.no_grad()
    def add(self, rows: torch.Tensor) -> None:
        rows = gather_rows(rows.detach())  # (M, D), the global batch under torch.distributed
        t0, n, m = int(self.seen), self.size, rows.shape[0]
        fill = max(0, min(n - t0, m))  # rows that go into empty slots
        self.buffer[t0 : t0 + fill] = rows[:fill]
        rest = rows[fill:]  # rows offered when the reservoir is full
        if len(rest):
            # row number t (0-based, t >= n) draws a slot j uniform in {0 .. t}; it is kept when j < n
            t = torch.arange(t0 + fill, t0 + m, dtype=torch.float64)  # (M - fill,)
            j = torch.empty(len(rest), dtype=torch.long)
            if not distributed() or torch.distributed.get_rank() == 0:
                u = torch.rand(len(rest), generator=self.generator, dtype=torch.float64)
                j = torch.minimum((u * (t + 1)).floor(), t).long()  # (M - fill,)
            if distributed():
                torch.distributed.broadcast(j, src=0)
            keep = j < n
            # several rows of one batch may draw the same slot: the last one wins, as in a loop
            winner = torch.full((n,), -1, dtype=torch.long)
            winner.scatter_reduce_(0, j[keep], torch.arange(len(rest))[keep], reduce="amax")
            hit = winner >= 0
            self.buffer[hit] = rest[winner[hit]]
        self.seen += m


@torch.no_grad()
def reestimate_codebook(
    codebook: torch.Tensor, rows: torch.Tensor, *, n_iters: int = 100, generator: torch.Generator | None = None
) -> bool:
    """Replace the whole codebook (K, d), in place, by the K k-means centroids of rows (N, d).

    Returns False (codebook untouched) when there are fewer rows than codes, as DistSup skips
    then. Under torch.distributed, k-means runs on rank 0 with `generator` and its centroids are
    broadcast, so every rank ends with the same codebook (rows must already be the same on every
    rank, as the reservoir makes them).
    """
    k = codebook.shape[0]
    if rows.shape[0] < k:
        return False
    new = torch.empty_like(codebook)  # (K, d)
    if not distributed() or torch.distributed.get_rank() == 0:
        new, _ = kmeans(rows.to(codebook.dtype), k, n_iters=n_iters, generator=generator)
    if distributed():
        torch.distributed.broadcast(new, src=0)
    codebook.copy_(new)
    return True


class BatchNormRows(nn.Module):
    """BatchNorm1d over rows (N, D) whose statistics are those of the global batch under
    torch.distributed (two differentiable all-reduces: the mean, then the biased variance).
    In one process it equals nn.BatchNorm1d(D) (running variance unbiased, momentum 0.1)."""

    def __init__(self, dim: int, *, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return (x - self.running_mean) / torch.sqrt(self.running_var + self.eps) * self.weight + self.bias
        n = torch.tensor(float(x.shape[0]), dtype=x.dtype)
        total = x.sum(dim=0)  # (D,)
        if distributed():
            from torch.distributed.nn.functional import all_reduce

            torch.distributed.all_reduce(n)
            total = all_reduce(total)
        mean = total / n  # (D,)
        sq = (x - mean).pow(2).sum(dim=0)  # (D,)
        if distributed():
            sq = all_reduce(sq)
        var = sq / n  # biased, for normalising
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class RobustVQ(nn.Module):
    """The DistSup VQ bottleneck with the three remedies on channel-first maps (B, D_in, *S):
    batch norm over D_in, a linear projection D_in -> d, VQ against K codes of dimension d
    (vq.VectorQuantizer: gradient codebook, commitment beta), and, in training, the projected rows
    offered to a reservoir of `reservoir_size` rows for `reestimate`.

    The forward returns a vq.QuantizerOutput whose z_q is in the code dimension d (B, d, *S).
    """

    def __init__(
        self,
        num_codes: int,
        in_dim: int,
        code_dim: int,
        *,
        reservoir_size: int = 20480,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.norm = BatchNormRows(in_dim)
        self.projection = nn.Linear(in_dim, code_dim)
        self.vq = VectorQuantizer(num_codes, code_dim, beta=beta, generator=generator)
        self.reservoir = ReservoirSampler(reservoir_size, code_dim, generator=generator)
        self.generator = generator

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        rows, grid = to_rows(z_e)  # (N, D_in)
        x = self.projection(self.norm(rows))  # (N, d)
        if self.training:
            self.reservoir.add(x)
        return self.vq(from_rows(x, grid))

    @torch.no_grad()
    def reestimate(self, *, n_iters: int = 100) -> bool:
        """All K codes <- k-means centroids of the reservoir, then the reservoir is emptied
        (VQBottleneck.reestimate). False, and nothing changes, while it holds fewer than K rows."""
        done = reestimate_codebook(
            self.vq.codebook, self.reservoir.contents(), n_iters=n_iters, generator=self.generator
        )
        if done:
            self.reservoir.reset()
        return done


def parameter_groups(
    model: nn.Module, codebook: nn.Parameter, *, lr: float, codebook_scale: float = 10.0
) -> list[dict]:
    """Optimiser parameter groups: the codebook at codebook_scale * lr, every other parameter of
    model at lr (distsup/trainer.py; codebook_lr is 10x learning_rate in every robustvq yaml).
    Use as torch.optim.Adam(parameter_groups(model, codebook, lr=5e-4), lr=5e-4)."""
    rest = [p for p in model.parameters() if p is not codebook]
    return [{"params": [codebook], "lr": codebook_scale * lr}, {"params": rest, "lr": lr}]


def code_usage(indices: torch.Tensor, num_codes: int) -> float:
    """Fraction of the K codes chosen at least once by indices (any shape)."""
    return torch.bincount(indices.reshape(-1), minlength=num_codes).gt(0).float().mean().item()
