"""The rotation trick: a gradient through vector quantisation by a frozen rotation and rescaling.

Paper and note:
    - Fifty et al. 2025, "Restructuring Vector Quantization with the Rotation Trick"
      (papers/fifty2025restructuring.md); official code cfifty/rotation_trick,
      src/models/vq_vae.py (`get_very_efficient_rotation` and the `rot` branch of `forward`),
      which this module follows.
    - The nearest-code search, losses and code-usage perplexity are those of VQ-VAE
      (reference_impls/vq.py, papers/oord2017neural.md).

Equations implemented (e: encoder output, q: its nearest code, both (D,) per position):
    ehat = e / ||e||,  qhat = q / ||q||,  w = (ehat + qhat) / ||ehat + qhat||
    R = I - 2 w w^T + 2 qhat ehat^T          a rotation with R ehat = qhat (it turns the plane of e and q)
    lambda = ||q|| / ||e||
    qtilde = sg[lambda R] e                  forward: qtilde = lambda ||e|| R ehat = q, exactly the VQ output
    backward: dL/de = lambda R^T dL/dqtilde  (R and lambda are constants; e enters linearly)
    Straight-through instead has dL/de = dL/dq. Because R is orthogonal and R ehat = qhat,
    <dL/de, ehat> / ||dL/de|| = <dL/dq, qhat> / ||dL/dq||: the gradient keeps its angle to the
    code when it is carried back to e, and two encoder outputs sharing a code receive different
    gradients (rotated by their own R) where straight-through gives both the same one.
R is never formed: R e = e - 2 (e . w) w + 2 (e . ehat) qhat, an O(D) computation per position.
If ehat = -qhat, w is 0 and R = I + 2 qhat ehat^T still maps ehat to qhat (forward stays exact).

Notation (code -> paper):
    e       e (encoder output)        q         q (codebook vector)       lam   ||q|| / ||e||
    R       R (rotation; treated as a constant in backpropagation)        qtilde  the layer's output
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.vq import (
    QuantizerOutput,
    from_rows,
    nearest_code,
    perplexity,
    to_rows,
    vq_losses,
)


def rotate_to(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """qtilde = sg[lambda R] e for rows e, q (N, D): value q, gradient lambda R^T g to e."""
    e_hat = F.normalize(e, dim=1).detach()  # (N, D)
    q_hat = F.normalize(q, dim=1).detach()
    w = F.normalize(e_hat + q_hat, dim=1)  # (N, D)
    lam = (q.norm(dim=1, keepdim=True) / e.norm(dim=1, keepdim=True).clamp_min(1e-12)).detach()  # (N, 1)
    r_e = e - 2 * (e * w).sum(1, keepdim=True) * w + 2 * (e * e_hat).sum(1, keepdim=True) * q_hat  # R e
    return lam * r_e


def rotation_matrix(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """R = I - 2 w w^T + 2 qhat ehat^T for one pair of vectors e, q (D,): (D, D). For tests and figures."""
    e_hat, q_hat = F.normalize(e, dim=0), F.normalize(q, dim=0)
    w = F.normalize(e_hat + q_hat, dim=0)
    return torch.eye(e.shape[0], dtype=e.dtype) - 2 * torch.outer(w, w) + 2 * torch.outer(q_hat, e_hat)


class RotationTrickVQ(nn.Module):
    """Nearest-code quantiser of channel-first maps (B, D, *S) whose gradient uses the rotation trick.

    The forward pass is plain VQ (same indices, same output, same codebook and commitment losses as
    reference_impls.vq.VectorQuantizer without EMA); only the gradient reaching z_e changes.
    """

    def __init__(self, num_codes: int, dim: int, *, beta: float = 0.25, generator: torch.Generator | None = None):
        super().__init__()
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.codebook = nn.Parameter(torch.randn(num_codes, dim, generator=generator))  # (K, D)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, *S) -> quantised map (B, D, *S)."""
        return from_rows(F.embedding(indices.reshape(-1), self.codebook), tuple(indices.shape))

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        rows, grid = to_rows(z_e)  # (N, D)
        indices = nearest_code(rows, self.codebook)  # (N,)
        z_q = F.embedding(indices, self.codebook)  # (N, D)
        codebook_loss, commitment, loss = vq_losses(rows, z_q, self.beta)
        out = from_rows(rotate_to(rows, z_q), grid)  # (B, D, *S)
        return QuantizerOutput(
            out, indices.reshape(grid), loss, codebook_loss, commitment, perplexity(indices, self.num_codes)
        )
