"""The discrete VAE (dVAE) of DALL-E: logits over K codes per position, a Gumbel-Softmax mixture
of codebook vectors in training and a hard argmax grid of indices at evaluation.

Papers and notes:
    - Zero-Shot Text-to-Image Generation, Ramesh et al. 2021 (papers/ramesh2021zero.md), stage 1.
    - The relaxation is gumbel.py's Gumbel-Softmax (papers/jang2017categorical.md).

Equations implemented:
    q_phi(z | x)   = softmax(logits)                    a categorical over K codes at each of h x w positions
    training       y = GumbelSoftmax(logits, tau)       (B, K, h, w) relaxed one-hot
                   z = sum_k y_k e_k                    the decoder input: a mixture of codebook vectors
    evaluation     k = argmax_k logits,  z = e_k        a 2-D grid of indices and its codebook lookup
    ELBO (neg.)    L = recon(x, x_hat) + beta * sum_{positions} KL(q_phi(z | x) || U(K))
                   KL(q || U(K)) = sum_k q_k log q_k + log K  (= log K - H(q))

What this answers (the June 1 question): a dVAE and a VQ-VAE both turn an image into a 2-D grid of
indices, each pointing into a codebook of K vectors, and the decoder sees the looked-up vectors.
They differ in how that grid is trained: the VQ-VAE takes a nearest neighbour and copies gradients
straight through (vq.py); the dVAE predicts a distribution over codes and trains through a
Gumbel-Softmax relaxation with a KL term to the uniform prior.

Notation (code -> paper):
    logits    the encoder output (unnormalised log q_phi)     codebook    e (K x D embedding)
    tau       relaxation temperature                         beta        KL weight
    recon     -log p_theta(x | y); here the mean squared error stands in for the paper's
              logit-Laplace likelihood
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.gumbel import gumbel_softmax


def kl_to_uniform(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """KL(softmax(logits) || Uniform(K)) along `dim`, summed over every other axis and averaged over the batch."""
    log_q = F.log_softmax(logits, dim=dim)  # (B, K, h, w)
    k = logits.shape[dim]
    kl = (log_q.exp() * log_q).sum(dim=dim) + math.log(k)  # (B, h, w)
    return kl.reshape(kl.shape[0], -1).sum(dim=1).mean()


@dataclass
class DVAEOutput:
    x_hat: torch.Tensor  # (B, C, H, W) reconstruction
    logits: torch.Tensor  # (B, K, h, w)
    decoder_input: torch.Tensor  # (B, D, h, w): relaxed mixture in training, codebook lookup at evaluation
    indices: torch.Tensor  # (B, h, w) argmax grid


class DVAE(nn.Module):
    """Conv encoder to K logits per position (downsampling by 4), a K x D codebook, a conv decoder."""

    def __init__(self, in_ch: int = 1, hidden: int = 32, num_codes: int = 16, code_dim: int = 16):
        super().__init__()
        self.num_codes = num_codes
        self.encoder = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, num_codes, 1),
        )
        self.codebook = nn.Parameter(torch.randn(num_codes, code_dim))  # (K, D)
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, hidden, 3, 1, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, in_ch, 4, 2, 1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> the grid of token indices (B, H/4, W/4) (the argmax of the logits)."""
        return self.encoder(x).argmax(dim=1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, h, w) -> codebook vectors (B, D, h, w)."""
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)

    def mix(self, soft_one_hot: torch.Tensor) -> torch.Tensor:
        """Relaxed one-hot (B, K, h, w) -> mixture of codebook vectors (B, D, h, w)."""
        return torch.einsum("bkhw,kd->bdhw", soft_one_hot, self.codebook)

    def forward(self, x: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None) -> DVAEOutput:
        logits = self.encoder(x)  # (B, K, h, w)
        indices = logits.argmax(dim=1)  # (B, h, w)
        if self.training:
            y = gumbel_softmax(logits, tau, hard=False, generator=generator, dim=1)  # (B, K, h, w)
            z = self.mix(y)  # (B, D, h, w)
        else:
            z = self.lookup(indices)  # (B, D, h, w)
        return DVAEOutput(self.decoder(z), logits, z, indices)

    def loss(self, x: torch.Tensor, out: DVAEOutput, beta: float = 1.0) -> torch.Tensor:
        """Negative ELBO with the uniform prior: reconstruction + beta * KL(q || U(K))."""
        recon = F.mse_loss(out.x_hat, x, reduction="none").reshape(x.shape[0], -1).sum(dim=1).mean()
        return recon + beta * kl_to_uniform(out.logits)
