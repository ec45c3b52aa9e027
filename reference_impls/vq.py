"""Vector quantisation: nearest-codebook lookup, straight-through gradients and the VQ losses.

Papers and notes:
    - VQ-VAE, van den Oord et al. 2017 (papers/oord2017neural.md): Eq. 1-3.
    - VQ-VAE-2, Razavi et al. 2019 (papers/razavi2019generating.md): EMA codebook updates.
    - ViT-VQGAN, Yu et al. 2022 (papers/yu2022vector.md): factorised, l2-normalised codes.

Equations implemented (VQ-VAE, Sec. 3.1-3.2):
    Eq. 1-2  k = argmin_j ||z_e(x) - e_j||_2,   z_q(x) = e_k
    Eq. 3    L = log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta * ||z_e(x) - sg[e]||^2
             (the codebook term moves only the codes; beta weights only the commitment term,
              which moves only the encoder)
    straight-through: the decoder's gradient at z_q is copied unchanged to z_e.

EMA update (VQ-VAE-2 / VQ-VAE appendix), with decay gamma and Laplace smoothing eps:
    N_k <- gamma N_k + (1 - gamma) n_k            n_k: how many vectors chose code k
    m_k <- gamma m_k + (1 - gamma) sum_{i: k_i = k} z_i
    N_k' = (N_k + eps) / (n + K eps) * n           n = sum_k N_k
    e_k  = m_k / N_k'

Factorised codes (ViT-VQGAN, Sec. 3.2): project z to a low dimension, l2-normalise z and the
codes, and look up by cosine similarity (for unit vectors, the nearest in Euclidean distance).

Notation (code -> paper):
    z_e      z_e(x), the encoder output        codebook   e, the K x D embedding space
    z_q      z_q(x), the quantised output      indices    k, the chosen code per position
    beta     beta (commitment weight)          decay      gamma (EMA)

Distances are computed as ||z||^2 - 2 z e^T + ||e||^2 with one matrix product, so an (N, K)
matrix is the largest thing built; no (N, K, D) tensor ever exists.

Fused path (VectorQuantizer(fused=True), plain gradient codebook only): `FusedVQ` gives the same
values and gradients as the readable forward below (tests/reference_impls/test_vq.py proves it)
with fewer passes over the (N, D) data. It reads the channel-first map without transposing it, in
blocks of a few hundred positions whose (K, block) distances stay in cache while the argmin reads
them (the full (N, K) matrix is never written to memory), takes the squared error from the minima
it found (both loss terms have the same value, ||z_e - e||^2), and writes the three gradients by
hand:
    dL/dz_e = g_out + g_commit * 2 (z_e - e) / (N D)          (straight-through + commitment)
    dL/de_k = g_codebook * 2 sum_{i: k_i = k} (e_k - z_i) / (N D)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def pairwise_sq_distances(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows of z (N, D) and codes (K, D): (N, K)."""
    z_sq = z.pow(2).sum(dim=1, keepdim=True)  # (N, 1)
    e_sq = codebook.pow(2).sum(dim=1)  # (K,)
    # ||z||^2 + ||e||^2 - 2 z e^T as a single addmm: (N, K)
    return torch.addmm(z_sq + e_sq, z, codebook.t(), beta=1.0, alpha=-2.0)


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Eq. 1: index of the nearest code for each row of z (N, D) -> (N,) int64.

    ||z||^2 is the same for every code, so the argmin needs only ||e||^2 - 2 z e^T, and both terms
    come out of one matrix product of augmented rows: [z, 1] @ [-2 e, ||e||^2]^T. Rows are taken
    in chunks, so at most a (chunk, K) block of distances exists at a time.
    """
    with torch.no_grad():
        codes = torch.cat([-2.0 * codebook, codebook.pow(2).sum(dim=1, keepdim=True)], dim=1)  # (K, D + 1)
        out = []
        for rows in z.split(chunk):
            rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)  # (chunk, D + 1)
            out.append((rows @ codes.t()).argmin(dim=1))  # (chunk,)
        return torch.cat(out)  # split always yields a chunk, an empty one for no rows


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Forward value z_q, backward gradient copied to z_e unchanged (identity Jacobian)."""
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: torch.Tensor, z_q: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 3 without the reconstruction term.

    Returns (codebook_loss, commitment_loss, total) with
        codebook_loss   = ||sg[z_e] - e||^2   (gradient reaches the codes only)
        commitment_loss = ||z_e - sg[e]||^2   (gradient reaches the encoder only)
        total           = codebook_loss + beta * commitment_loss
    """
    codebook_loss = F.mse_loss(z_q, z_e.detach())
    commitment_loss = F.mse_loss(z_e, z_q.detach())
    return codebook_loss, commitment_loss, codebook_loss + beta * commitment_loss


def perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """exp(entropy) of the code usage histogram: K when all codes are used equally, 1 at collapse."""
    counts = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
    probs = counts / counts.sum()
    return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())


def distributed() -> bool:
    """Whether a torch.distributed process group is running (batch statistics are then synced)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def ema_update(
    codebook: torch.Tensor,
    cluster_size: torch.Tensor,
    embed_sum: torch.Tensor,
    z: torch.Tensor,
    indices: torch.Tensor,
    decay: float,
    eps: float,
) -> None:
    """One EMA step, in place, on codebook (K, D), cluster_size (K,) and embed_sum (K, D).

    z (N, D) are the encoder outputs and indices (N,) the codes they chose. Under torch.distributed
    the counts and sums are all-reduced first, so every rank applies the update of the whole global
    batch and N processes keep the codebook of one process fed that batch (as Sonnet, Jukebox and
    vector-quantize-pytorch's `sync_codebook` do); DDP's broadcast of rank 0's buffers then changes
    nothing.
    """
    num_codes = codebook.shape[0]
    n_k = torch.bincount(indices, minlength=num_codes).to(z.dtype)  # (K,) how many chose code k
    z_sum = torch.zeros_like(codebook).index_add_(0, indices, z)  # (K, D) sum of the vectors that chose k
    if distributed():
        torch.distributed.all_reduce(n_k)  # (K,) counts of the global batch
        torch.distributed.all_reduce(z_sum)  # (K, D) sums of the global batch
    cluster_size.mul_(decay).add_(n_k, alpha=1 - decay)  # N_k
    embed_sum.mul_(decay).add_(z_sum, alpha=1 - decay)  # m_k
    n = cluster_size.sum()
    smoothed = (cluster_size + eps) / (n + num_codes * eps) * n  # N_k' (Laplace smoothing)
    codebook.copy_(embed_sum / smoothed.unsqueeze(1))  # e_k = m_k / N_k'


class FusedVQ(torch.autograd.Function):
    """Eq. 1-3 in one autograd node: (z_e (B, D, *S), codebook (K, D), rows, codes_per_block) -> (z_q (B, D, *S),
    codebook loss, commitment loss, indices (B, *S)). z_q has z_e's value gradient (straight-through).

    Distances are taken block by block: about `rows` positions (a few images x a slice of their
    positions) against `codes_per_block` codes, so each block of scores stays in cache while the
    minimum is read from it; a running minimum carries over from one block of codes to the next.
    """

    @staticmethod
    def forward(ctx, z_e: torch.Tensor, codebook: torch.Tensor, rows: int, codes_per_block: int):
        b, d = z_e.shape[:2]
        spatial = z_e.shape[2:]
        flat = z_e.detach().reshape(b, d, -1)  # (B, D, M), a view of the channel-first map
        m = flat.shape[2]
        codes = codebook.detach()  # (K, D)
        k = codes.shape[0]
        e_sq = codes.pow(2).sum(dim=1, keepdim=True)  # (K, 1)
        neg2_codes = -2.0 * codes  # (K, D)
        cols = min(m, max(1, rows // 2))  # positions per image in a block: at least two images per block
        per = max(1, rows // cols)  # images per block
        idx = flat.new_empty((b, m), dtype=torch.long)  # k_i, the nearest code
        best = flat.new_empty((b, m))  # min_k ||e_k||^2 - 2 z_i e_k
        z_sq = flat.new_zeros(())  # sum of ||z_i||^2
        z_q = flat.new_empty((b, d, m))
        z_sum = flat.new_zeros((d, k))  # column k: sum of the z_i that chose code k
        for b0 in range(0, b, per):
            group = flat[b0 : b0 + per]  # (n, D, M)
            n = group.shape[0]
            for s in range(0, m, cols):
                block = group[:, :, s : s + cols]  # (n, D, c)
                best_b, idx_b = best[b0 : b0 + n, s : s + cols], idx[b0 : b0 + n, s : s + cols]  # (n, c) views
                for k0 in range(0, k, codes_per_block):
                    # ||e||^2 - 2 e z for codes k0..k1: (n, k1 - k0, c), smallest at the nearest code
                    e = neg2_codes[k0 : k0 + codes_per_block]
                    scores = torch.baddbmm(e_sq[k0 : k0 + codes_per_block], e.expand(n, *e.shape), block)
                    if k0 == 0:
                        torch.min(scores, dim=1, out=(best_b, idx_b))
                        continue
                    value, i = scores.min(dim=1)
                    closer = value < best_b  # strict: on a tie the lower index stays, as argmin keeps it
                    torch.where(closer, value, best_b, out=best_b)
                    torch.where(closer, i + k0, idx_b, out=idx_b)
            k_i = idx[b0 : b0 + n]  # (n, M)
            z_sq += group.reshape(-1).dot(group.reshape(-1))
            # z_q channel-first without a transpose: row d of e^T at column k_i, for every position
            torch.gather(codes.t().expand(n, d, k), 2, k_i[:, None, :].expand(n, d, m), out=z_q[b0 : b0 + n])
            for image, k_image in zip(group, k_i, strict=True):  # (D, M), (M,)
                z_sum.index_add_(1, k_image, image)
        # ||z_i - e_k||^2 = ||z_i||^2 + (||e_k||^2 - 2 z_i e_k), the minimum just found
        mse = (z_sq + best.sum()) / flat.numel()
        ctx.save_for_backward(flat, z_q, idx, codes, z_sum)
        return z_q.view(b, d, *spatial), mse, mse.clone(), idx.view(b, *spatial)

    @staticmethod
    def backward(ctx, g_out, g_codebook, g_commit, _g_idx):
        flat, z_q, idx, codes, z_sum = ctx.saved_tensors  # (B, D, M), (B, D, M), (B, M), (K, D), (D, K)
        scale = 2.0 / flat.numel()
        # straight-through (g_out unchanged) + commitment: 2 (z_e - e) / (N D), image by image so the
        # partial sum is still in cache when the second term is subtracted
        c = float(g_commit) * scale
        g = g_out.reshape(flat.shape)
        g_z = torch.empty_like(flat, memory_format=torch.contiguous_format)
        for i in range(flat.shape[0]):
            torch.add(g[i], flat[i], alpha=c, out=g_z[i]).sub_(z_q[i], alpha=c)
        # codebook: 2 sum_{i: k_i = k} (e_k - z_i) / (N D) = 2 (n_k e_k - sum_{i: k_i = k} z_i) / (N D)
        n_k = torch.bincount(idx.reshape(-1), minlength=codes.shape[0]).to(flat.dtype)  # (K,)
        g_e = (codes * n_k[:, None] - z_sum.t()) * (float(g_codebook) * scale)  # (K, D)
        return g_z.view(g_out.shape), g_e, None, None


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # quantised output, same layout as the input, straight-through applied
    indices: torch.Tensor  # (B, *spatial) int64
    loss: torch.Tensor  # codebook_loss + beta * commitment_loss (EMA: beta * commitment_loss)
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor


def to_rows(z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """(B, D, *S) channel-first -> (B * prod(S), D) rows, and the (B, *S) shape."""
    b, d = z.shape[:2]
    spatial = tuple(z.shape[2:])
    rows = z.movedim(1, -1).reshape(-1, d)  # (N, D)
    return rows, (b, *spatial)


def from_rows(rows: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """(N, D) rows -> (B, D, *S) channel-first."""
    return rows.reshape(*grid, rows.shape[-1]).movedim(-1, 1)


class VectorQuantizer(nn.Module):
    """Quantise channel-first feature maps (B, D, *spatial) against a codebook of K codes.

    Options:
        ema=True      codebook is a buffer updated by exponential moving averages (VQ-VAE-2);
                      it receives no gradient and the loss is beta * commitment only. In
                      training, z_q and the commitment loss use the codes from before this step's
                      update (Sonnet's VectorQuantizerEMA, Jukebox, vector-quantize-pytorch).
        code_dim=d    factorised codes (ViT-VQGAN): project D -> d before the lookup and d -> D
                      after it.
        l2_normalize  l2-normalise inputs and codes, so the lookup is the cosine argmax.
        fused=True    the plain path (gradient codebook, no projection, no l2) through FusedVQ:
                      the same values and gradients, faster on large maps.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        eps: float = 1e-5,
        code_dim: int | None = None,
        l2_normalize: bool = False,
        generator: torch.Generator | None = None,
        *,
        fused: bool = False,
    ):
        super().__init__()
        if fused and (ema or code_dim or l2_normalize):
            raise ValueError("fused=True covers the plain gradient codebook only (no ema, code_dim or l2_normalize)")
        self.fused = fused
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.ema, self.decay, self.eps = ema, decay, eps
        self.l2_normalize = l2_normalize
        self.code_dim = code_dim or dim
        self.in_proj = nn.Linear(dim, self.code_dim) if code_dim else nn.Identity()
        self.out_proj = nn.Linear(self.code_dim, dim) if code_dim else nn.Identity()
        init = torch.randn(num_codes, self.code_dim, generator=generator)  # (K, d)
        if ema:
            self.register_buffer("codebook", init.clone())
            self.register_buffer("cluster_size", torch.ones(num_codes))  # as if each code had been chosen once
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)

    def codes(self) -> torch.Tensor:
        """The codebook as used for lookup: (K, d), unit rows when l2_normalize."""
        return F.normalize(self.codebook, dim=1) if self.l2_normalize else self.codebook

    def quantize_rows(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows z (N, d) already projected -> (z_q rows (N, d) without straight-through, indices (N,))."""
        codes = self.codes()  # (K, d)
        indices = nearest_code(z, codes)  # (N,)
        return F.embedding(indices, codes), indices  # (N, d), (N,)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> quantised map (B, D, *S): what the decoder receives."""
        rows = self.out_proj(F.embedding(indices.reshape(-1), self.codes()))  # (N, D)
        return from_rows(rows, tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        if self.fused:
            z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, self.codebook, 256, 1024)
            loss = codebook_loss + self.beta * commitment
            return QuantizerOutput(z_q, idx, loss, codebook_loss, commitment, perplexity(idx, self.num_codes))
        rows, grid = to_rows(z_e)  # (N, D)
        z = self.in_proj(rows)  # (N, d)
        if self.l2_normalize:
            z = F.normalize(z, dim=1)
        z_q, indices = self.quantize_rows(z)  # (N, d), (N,)
        if self.ema:
            if self.training:
                with torch.no_grad():
                    ema_update(
                        self.codebook, self.cluster_size, self.embed_sum, z.detach(), indices, self.decay, self.eps
                    )
            z_q = z_q.detach()
            commitment = F.mse_loss(z, z_q)
            codebook_loss = torch.zeros((), device=z.device)
            loss = self.beta * commitment
        else:
            codebook_loss, commitment, loss = vq_losses(z, z_q, self.beta)
        z_q = straight_through(z, z_q)  # (N, d)
        out = from_rows(self.out_proj(z_q), grid)  # (B, D, *S)
        idx = indices.reshape(grid)  # (B, *S)
        return QuantizerOutput(out, idx, loss, codebook_loss, commitment, perplexity(indices, self.num_codes))
