"""DAC (improved RVQGAN): residual VQ with factorised, l2-normalised code lookup and quantizer dropout.

Paper and note:
    - Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
      (papers/kumar2023high.md); official code descriptinc/descript-audio-codec, dac/nn/quantize.py
      (VectorQuantize, ResidualVectorQuantize), whose per-level computation this module follows.
    - Residual quantisation and its greedy index search are reference_impls/residual_vq.py
      (RQ-VAE / SoundStream, papers/lee2022autoregressive.md, papers/zeghidour2022soundstream.md);
      factorised l2-normalised codes come from ViT-VQGAN (papers/yu2022vector.md).

Equations implemented (levels d = 1 .. N_q, encoder width D, code width c << D, K codes per level):
    r_0 = z
    z_e,d = W_in,d r_{d-1} + b_in,d                                   (D -> c)
    k_d = argmax_k  <z_e,d / ||z_e,d||,  e_d(k) / ||e_d(k)||>          (cosine lookup in the low dimension)
    o_d = W_out,d (z_e,d + sg[e_d(k_d) - z_e,d]) + b_out,d              (c -> D; forward value W_out e_d(k_d) + b_out,
                                                                       the raw, unnormalised code, as the official code)
    r_d = r_{d-1} - o_d
    z_hat = sum_{d <= n_q} o_d
    losses per level: commitment ||z_e,d - sg[e_d(k_d)]||^2, codebook ||sg[z_e,d] - e_d(k_d)||^2,
    zero for samples whose n_q stops before level d, averaged over the batch, summed over levels;
    loss = codebook + beta * commitment.
    Quantizer dropout (training): each sample, with probability p, keeps only its first n_q ~ U{1..N_q}
    levels in z_hat (and in the losses); the other samples keep all N_q. At inference n_q is chosen
    (the bitrate) and only the first n_q levels run.

The indices come from residual_vq.residual_quantize with each level's cosine lookup passed as its
`lookups` hook, over the level's full-width code table W_out e_d + b_out; the differentiable pass
then recomputes the selected codes from the parameters, as residual_vq.ResidualVQ does.

Notation (code -> paper / official code):
    depth      N_q (n_codebooks)        code_dim   c (codebook_dim)       dropout   p (quantizer_dropout)
    n_q        the active levels        in_proj / out_proj   the factorising projections (WNConv1d, kernel 1)
Simplification: plain linear projections instead of weight-normalised 1x1 convolutions; dropout is
drawn per sample from the generator (the official code gives it to the first floor(p B) samples of
each batch, which are in random order anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.residual_vq import RVQOutput, residual_quantize
from reference_impls.vq import nearest_code, perplexity


class FactorizedLevel(nn.Module):
    """One DAC level: project D -> c, look up by cosine among K codes of width c, project c -> D."""

    def __init__(self, num_codes: int, dim: int, code_dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.in_proj = nn.Linear(dim, code_dim)
        self.out_proj = nn.Linear(code_dim, dim)
        self.codebook = nn.Parameter(torch.randn(num_codes, code_dim, generator=generator))  # (K, c)

    def choose(self, residual: torch.Tensor) -> torch.Tensor:
        """k = argmax cosine(W_in r + b_in, e(k)) for rows r (N, D) -> (N,)."""
        z_e = F.normalize(self.in_proj(residual), dim=1)  # (N, c)
        return nearest_code(z_e, F.normalize(self.codebook, dim=1))  # nearest unit vector = largest cosine

    def table(self) -> torch.Tensor:
        """What each index contributes to the output, W_out e(k) + b_out: (K, D)."""
        return self.out_proj(self.codebook)


@dataclass
class DACOutput(RVQOutput):
    num_quantizers: torch.Tensor  # (B,) the levels each sample used in z_q


def draw_num_quantizers(batch: int, depth: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantizer dropout: with probability p a sample keeps n_q ~ U{1..depth} levels, else all: (B,) int64."""
    dropped = torch.rand(batch, generator=generator) < p
    n = torch.randint(1, depth + 1, (batch,), generator=generator)
    return torch.where(dropped, n, torch.full_like(n, depth))


class DACQuantizer(nn.Module):
    """DAC's residual vector quantiser of channel-first maps (B, D, *S) with `depth` factorised levels."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        depth: int,
        *,
        code_dim: int = 8,
        dropout: float = 0.5,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_codes, self.dim, self.depth = num_codes, dim, depth
        self.dropout, self.beta, self.generator = dropout, beta, generator
        self.levels = nn.ModuleList(FactorizedLevel(num_codes, dim, code_dim, generator) for _ in range(depth))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S, n_q) -> sum of the first n_q levels' outputs (B, D, *S)."""
        out = sum(F.embedding(indices[..., d], lvl.table()) for d, lvl in enumerate(self.levels[: indices.shape[-1]]))
        return out.movedim(-1, 1)

    def forward(self, z_e: torch.Tensor, n_q: int | None = None) -> DACOutput:
        b, dim = z_e.shape[:2]
        spatial = tuple(z_e.shape[2:])
        if n_q is not None and not 1 <= n_q <= self.depth:
            raise ValueError(f"n_q must be in [1, {self.depth}], got {n_q}")
        if n_q is not None:
            per_sample = torch.full((b,), n_q, dtype=torch.long)
        elif self.training:
            per_sample = draw_num_quantizers(b, self.depth, self.dropout, self.generator)
        else:
            per_sample = torch.full((b,), self.depth, dtype=torch.long)
        run = self.depth if (self.training and n_q is None) else int(per_sample.max())  # levels computed
        levels = list(self.levels[:run])
        rows = z_e.movedim(1, -1).reshape(-1, dim)  # (N, D), sample-major
        per_row = per_sample.repeat_interleave(rows.shape[0] // b)  # (N,) levels of each row's sample
        with torch.no_grad():
            indices, _ = residual_quantize(
                rows, [lvl.table() for lvl in levels], lookups=[lvl.choose for lvl in levels]
            )
        residual, z_q, partial, partials = rows, torch.zeros_like(rows), torch.zeros_like(rows), []
        commitment = codebook_loss = rows.new_zeros(())
        for d, lvl in enumerate(levels):
            active = (per_row > d).to(rows.dtype).unsqueeze(1)  # (N, 1) dropout mask of level d
            proj = lvl.in_proj(residual)  # (N, c)
            code = F.embedding(indices[:, d], lvl.codebook)  # (N, c) raw code e_d(k_d)
            commitment = commitment + ((proj - code.detach()).pow(2) * active).mean()  # masked, batch mean
            codebook_loss = codebook_loss + ((code - proj.detach()).pow(2) * active).mean()
            o = lvl.out_proj(proj + (code - proj).detach())  # (N, D) straight-through
            residual = residual - o
            z_q = z_q + o * active
            partial = partial + o.detach()
            partials.append(partial.reshape(b, *spatial, dim).movedim(-1, 1))
        return DACOutput(
            z_q=z_q.reshape(b, *spatial, dim).movedim(-1, 1),
            indices=indices.reshape(b, *spatial, run),
            loss=codebook_loss + self.beta * commitment,
            codebook_loss=codebook_loss,
            commitment_loss=commitment,
            partial_sums=partials,
            perplexity=perplexity(indices[:, 0], self.num_codes),
            num_quantizers=per_sample,
        )
