"""Straightened straight-through VQ: a shared affine codebook, alternating codebook steps and the
synchronised commitment update.

Paper and note:
    - Huh, Cheung, Agrawal and Isola 2023, "Straightening Out the Straight-Through Estimator:
      Overcoming Optimization Challenges in Vector Quantized Networks", ICML 2023
      (papers/huh2023straightening.md). Official library: minyoungg/vqtorch; this module follows
      vqtorch/nn/vq.py (VectorQuant) and vqtorch/nn/affine.py (AffineTransform) at 02e60a1.
    The nearest-code lookup, the two VQ loss terms and the row layout come from vq.py.

Mechanisms implemented (names as in vqtorch):
    affine codebook (affine_lr = lambda > 0), one scale s and one shift b per feature, shared by
    all K codes and zero-initialised, so training starts from the plain codebook:
        c'_k = (1 + lambda s) * c_k + lambda b                                   (AffineTransform)
    A step on s or b moves every code, chosen or not. lambda scales the affine parameters' learning
    rate (the README example uses affine_lr = 10).

    affine from running statistics (running_statistics=True; AffineTransform's other mode, which
    VectorQuant never switches on): s and b are not learned but match the codebook's per-feature
    moments to the encoder outputs':
        scale = sqrt(var_z / (var_c + 1e-8)),  shift = mean_z - scale * mean_c,  c' = scale c + shift
    mean_z, var_z (biased) over every encoder output of the batch, mean_c, var_c over the K codes,
    each kept as a running average with momentum 0.1 (the first batch copied as is). Under
    torch.distributed the encoder-output moments are those of the global batch (sums all-reduced),
    so N processes keep the statistics of one process fed the whole batch.

    loss, beta in [0, 1] (default 0.95; VectorQuant.compute_loss):
        L_vq = (1 - beta) ||z_e - sg[z_q]||^2 + beta ||sg[z_e] - z_q||^2
    Here beta weights the codebook term and 1 - beta the commitment term, unlike VQ-VAE's beta.

    synchronised commitment (sync_nu = nu; straight_through_approximation):
        z_out = z_e + sg[z_q - z_e] + nu z_q - sg[nu z_q]
    The forward value is z_q; the encoder gets the decoder gradient g unchanged and the chosen
    code gets nu g on top of its codebook-loss gradient, so it moves with the encoder output:
        dL/dc'_k = nu sum_{i: k_i = k} g_i + beta 2 sum_{i: k_i = k} (c'_k - z_i) / (N D)

    alternating optimisation (inner_optimizer): in each training forward the raw codes first take
    one step of their own optimiser on ||sg[z_e] - c'||^2 with the assignments fixed, and the
    output is read from the updated codes (vqtorch requires beta = 1 here: the codebook term of
    L_vq then moves only the codes and the inner step does the codebook's part). Under
    torch.distributed the inner step's gradient is the global batch's (all-reduced), so the ranks'
    codebooks stay equal.

Notation (code -> vqtorch / paper):
    codebook   c (raw codes, nn.Embedding weight)    codes()   c' (affine-transformed table)
    scale      s            shift  b                 affine_lr lambda (lr_scale)
    beta       beta         nu     sync_nu

Left out: group affine (affine_groups > 1), k-means initialisation, the dead-code replacement
(replace_freq), cosine distance and the input / codebook normalisations of vqtorch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import QuantizerOutput, distributed, from_rows, nearest_code, perplexity, to_rows, vq_losses


def batch_moments(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and biased variance of the rows z (N, D): (D,), (D,).

    Under torch.distributed they are the moments of the global batch: the count and the sum are
    all-reduced for the mean, then the sum of squared deviations from that mean for the variance
    (two passes, no E[z^2] - E[z]^2 cancellation)."""
    n = torch.tensor(float(z.shape[0]), dtype=z.dtype)
    total = z.sum(dim=0)  # (D,)
    if distributed():
        torch.distributed.all_reduce(n)
        torch.distributed.all_reduce(total)
    mean = total / n  # (D,)
    sq = (z - mean).pow(2).sum(dim=0)  # (D,)
    if distributed():
        torch.distributed.all_reduce(sq)
    return mean, sq / n


def affine_codes(codebook: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """c' = scale * c + shift for every code: codebook (K, D), scale (D,), shift (D,) -> (K, D)."""
    return scale * codebook + shift


def synchronized_straight_through(z_e: torch.Tensor, z_q: torch.Tensor, nu: float) -> torch.Tensor:
    """Value z_q; gradient g to z_e unchanged and nu * g to z_q (nu = 0: the plain straight-through)."""
    out = z_e + (z_q - z_e).detach()
    if nu > 0:
        out = out + nu * z_q - (nu * z_q).detach()
    return out


class AffineCodebook(nn.Module):
    """The shared affine map c' = scale c + shift, learned (default) or from running moments."""

    def __init__(self, dim: int, *, lr_scale: float = 1.0, running_statistics: bool = False, momentum: float = 0.1):
        super().__init__()
        self.running_statistics, self.momentum, self.lr_scale = running_statistics, momentum, lr_scale
        if running_statistics:
            self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
            self.register_buffer("z_mean", torch.zeros(dim))
            self.register_buffer("z_var", torch.ones(dim))
            self.register_buffer("c_mean", torch.zeros(dim))
            self.register_buffer("c_var", torch.ones(dim))
        else:
            self.scale = nn.Parameter(torch.zeros(dim))  # s
            self.shift = nn.Parameter(torch.zeros(dim))  # b

    @torch.no_grad()
    def update_running_statistics(self, z: torch.Tensor, codebook: torch.Tensor) -> None:
        """One running-average step on the moments of the rows z (N, D) and the raw codes (K, D)."""
        z_mean, z_var = batch_moments(z)  # global batch under torch.distributed
        c_mean, c_var = codebook.mean(dim=0), codebook.var(dim=0, unbiased=False)  # the same table on every rank
        m = 1.0 if not self.initialized else self.momentum  # the first batch is copied
        for buf, new in ((self.z_mean, z_mean), (self.z_var, z_var), (self.c_mean, c_mean), (self.c_var, c_var)):
            buf.mul_(1 - m).add_(new, alpha=m)
        self.initialized.fill_(True)

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each (D,)."""
        if self.running_statistics:
            scale = (self.z_var / (self.c_var + 1e-8)).sqrt()
            return scale, self.z_mean - scale * self.c_mean
        return 1.0 + self.lr_scale * self.scale, self.lr_scale * self.shift

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return affine_codes(codebook, *self.params())  # (K, D)


class StraightenedVQ(nn.Module):
    """Vector quantiser of channel-first maps (B, D, *S) with vqtorch's three changes to the STE.

    Options (keyword-only):
        beta                weight of the codebook term, 1 - beta of the commitment term.
        sync_nu             nu of the synchronised commitment (0: plain straight-through).
        affine_lr           lambda of the learned shared affine map (0: no affine map).
        running_statistics  the affine map from running moments instead of learned (needs affine_lr > 0).
        inner_optimizer     a factory params -> torch.optim.Optimizer for the alternating codebook step.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.95,
        sync_nu: float = 0.0,
        affine_lr: float = 0.0,
        running_statistics: bool = False,
        momentum: float = 0.1,
        inner_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if inner_optimizer is not None and beta != 1.0:
            raise ValueError("the alternating codebook step needs beta = 1 (as vqtorch requires)")
        if running_statistics and affine_lr <= 0:
            raise ValueError("running_statistics is a mode of the affine map: set affine_lr > 0")
        self.num_codes, self.dim, self.beta, self.nu = num_codes, dim, beta, sync_nu
        self.codebook = nn.Parameter(torch.randn(num_codes, dim, generator=generator))  # c (K, D)
        self.affine = (
            AffineCodebook(dim, lr_scale=affine_lr, running_statistics=running_statistics, momentum=momentum)
            if affine_lr > 0
            else None
        )
        self.inner = inner_optimizer([self.codebook]) if inner_optimizer is not None else None

    def codes(self) -> torch.Tensor:
        """The table the lookup uses: c' (K, D), differentiable in c and in the affine parameters."""
        return self.codebook if self.affine is None else self.affine(self.codebook)

    def inner_step(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        """Alternating optimisation: one step of the inner optimiser on ||sg[z] - c'_{k_i}||^2 (mean)
        over the raw codes, the assignments held fixed. The raw codes' outer gradient is kept.

        Under torch.distributed the gradient is that of the global batch's mean (sums and counts
        all-reduced), so every rank takes the same step: DDP would not reconcile a step taken inside
        the forward, and each rank's own step would leave the ranks with different codebooks."""
        sq_err = (F.embedding(indices, self.codes()) - z.detach()).pow(2).sum()
        (grad,) = torch.autograd.grad(sq_err, [self.codebook])  # (K, D)
        count = torch.tensor(float(z.numel()), dtype=z.dtype)  # N D
        if distributed():
            torch.distributed.all_reduce(grad)
            torch.distributed.all_reduce(count)
        outer, self.codebook.grad = self.codebook.grad, grad / count
        self.inner.step()
        self.codebook.grad = outer

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        if self.training and self.affine is not None and self.affine.running_statistics:
            self.affine.update_running_statistics(rows.detach(), self.codebook.detach())
        indices = nearest_code(rows, self.codes())  # (N,) Eq. 1 on c'
        if self.training and self.inner is not None:
            self.inner_step(rows, indices)  # codes move first; the assignments are not recomputed
        z_q = F.embedding(indices, self.codes())  # (N, D) c'_{k_i}
        codebook_loss, commitment, _ = vq_losses(rows, z_q, 1.0)
        loss = self.beta * codebook_loss + (1.0 - self.beta) * commitment
        out = from_rows(synchronized_straight_through(rows, z_q, self.nu), grid)  # (B, D, *S)
        usage = perplexity(indices, self.num_codes)
        return QuantizerOutput(out, indices.reshape(grid), loss, codebook_loss, commitment, usage)
