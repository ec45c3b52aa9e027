"""SQ-VAE: stochastic quantisation over a codebook with a learned, self-annealing variance (Gaussian SQ-VAE).

Paper and note:
    - SQ-VAE, Takida et al. 2022 (ICML) (papers/takida2022sq.md); official code: sony/sqvae,
      vision/quantizer.py (`GaussianVectorQuantizer`, the "gaussian_1" variance), vision/model.py
      (`SQVAE.forward`, `GaussianSQVAE._calc_loss`), vision/trainer_base.py (`_set_temperature`)
      and vision/configs, which this module follows.
    The squared distances come from vq.py (`pairwise_sq_distances`), the relaxed sample from
    gumbel.py (`gumbel_softmax`).

Stochastic quantisation (quantizer.py), encoder output zhat_i, codes b_1 .. b_K, variance s^2:
    logits      l_ik = -||zhat_i - b_k||^2 / (2 s^2)
    posterior   P_ik = softmax_k(l_ik)                     (the nearest code has the largest logit)
    training    z_i = sum_k y_ik b_k,  y_i = GumbelSoftmax(l_i, tau)   (relaxed, differentiable)
    test        z_i = b_{argmax_k P_ik} (deterministic) or b_k with k ~ P_i
    As s -> 0 the logits' gaps grow as 1 / s^2: P_i tends to the one-hot of the nearest code and
    y_i to it too, so SQ tends to nearest-neighbour VQ.

Latent loss per image (quantizer.py, summed over the image's positions i, averaged over images):
    L_latent = sum_i sum_k P_ik log P_ik  +  sum_i ||zhat_i - z_i||^2 / (2 s^2)
    The first term is KL(P_i || uniform over K) - log K per position (the constant is dropped);
    the second, the Gaussian dequantisation term, uses the relaxed z_i in training.

Reconstruction per image (model.py GaussianSQVAE), D_x = number of values in an image,
mse = sum of squared errors of the batch / number of images:
    arelbo=True (the default flag)  L_rec = (D_x / 2) log mse           (decoder variance at its MLE)
    learned sigma_x^2               L_rec = mse / (2 sigma_x^2) + (D_x / 2) log sigma_x^2
The loss is L_rec + L_latent: the negative ELBO up to constants.

Variance ("gaussian_1", model.py): s^2 = exp(0) + exp(l) = 1 + exp(l), one learned scalar l,
initialised to log 20 (configs/cifar10_gauss_1.yaml log_param_q_init). The other variants take
per-image or per-position log-variances from the encoder instead of the fixed 0; not covered.
Gumbel temperature (trainer_base.py, configs/defaults.py): tau = max(1.0 exp(-1e-5 step), 0).
Self-annealing: nothing schedules s^2; the gradient of the loss moves l, and s^2 shrinks as
training makes the reconstruction prefer near-deterministic quantisation.

Notation (code -> paper / official code):
    zhat         encoder output (z_from_encoder)       codebook   b_k (codebook), K x D
    var          s^2 (param_q, var_q)                   log_param  l (log_param_q_scalar)
    probs        P (probabilities)                      tau        Gumbel temperature
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.gumbel import gumbel_softmax
from reference_impls.vq import from_rows, pairwise_sq_distances, perplexity, to_rows


def sq_logits(zhat: torch.Tensor, codebook: torch.Tensor, var: torch.Tensor | float) -> torch.Tensor:
    """l_ik = -||zhat_i - b_k||^2 / (2 s^2): rows zhat (N, D), codes (K, D) -> (N, K)."""
    return -pairwise_sq_distances(zhat, codebook) / (2 * var)


def latent_loss(
    zhat: torch.Tensor, z: torch.Tensor, logits: torch.Tensor, var: torch.Tensor | float, num_images: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two latent terms per image: (sum_i sum_k P log P, sum_i ||zhat_i - z_i||^2 / (2 s^2)),
    each summed over all rows zhat, z (N, D) / logits (N, K) and divided by num_images."""
    kl_discrete = (logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum() / num_images
    kl_continuous = (zhat - z).pow(2).sum() / (2 * var) / num_images
    return kl_discrete, kl_continuous


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, log_var_x: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian reconstruction term per image of (B, *) images. log_var_x=None: the decoder variance
    at its maximum-likelihood value, (D_x / 2) log mse (ARELBO); else mse / (2 sigma^2) + (D_x / 2) log sigma^2."""
    dim_x = x[0].numel()
    mse = F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]  # sum of squared errors per image
    if log_var_x is None:
        return dim_x * torch.log(mse) / 2
    return mse / (2 * log_var_x.exp()) + dim_x * log_var_x / 2


def gumbel_temperature(step: int, *, init: float = 1.0, decay: float = 1e-5, minimum: float = 0.0) -> float:
    """tau = max(init * exp(-decay * step), minimum) (trainer_base.py _set_temperature)."""
    return max(init * math.exp(-decay * step), minimum)


@dataclass
class SQOutput:
    z_q: torch.Tensor  # (B, D, *S) what the decoder receives (relaxed in training)
    indices: torch.Tensor  # (B, *S) argmax code (training and deterministic test) or the sampled one
    probs: torch.Tensor  # (N, K) P
    loss: torch.Tensor  # L_latent = kl_discrete + kl_continuous
    kl_discrete: torch.Tensor
    kl_continuous: torch.Tensor
    var: torch.Tensor  # s^2
    perplexity: torch.Tensor  # of the argmax codes (the official code averages P in training)


class GaussianSQ(nn.Module):
    """Gaussian stochastic quantiser on channel-first maps (B, D, *S), variance s^2 = floor + exp(l).

    floor=1.0 is the official "gaussian_1" (s^2 = exp(0) + exp(l)); floor=0.0 gives a variance
    that can shrink to 0. The codebook is initialised N(0, 1), as in model.py.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        log_var_init: float = math.log(20.0),
        var_floor: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_codes, self.dim, self.var_floor = num_codes, dim, var_floor
        self.codebook = nn.Parameter(torch.randn(num_codes, dim, generator=generator))  # (K, D)
        self.log_param = nn.Parameter(torch.tensor(float(log_var_init)))  # l

    def variance(self) -> torch.Tensor:
        return self.var_floor + self.log_param.exp()  # s^2

    def forward(
        self,
        zhat: torch.Tensor,
        *,
        tau: float = 1.0,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> SQOutput:
        rows, grid = to_rows(zhat)  # (N, D)
        var = self.variance()
        logits = sq_logits(rows, self.codebook, var)  # (N, K)
        probs = logits.softmax(dim=1)  # (N, K)
        if self.training:
            y = gumbel_softmax(logits, tau, generator=generator)  # (N, K) relaxed one-hot
            indices = probs.argmax(dim=1)
        elif deterministic:
            indices = probs.argmax(dim=1)
            y = F.one_hot(indices, self.num_codes).to(rows.dtype)
        else:
            indices = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            y = F.one_hot(indices, self.num_codes).to(rows.dtype)
        z = y @ self.codebook  # (N, D)
        kl_discrete, kl_continuous = latent_loss(rows, z, logits, var, grid[0])
        return SQOutput(
            z_q=from_rows(z, grid),
            indices=indices.reshape(grid),
            probs=probs,
            loss=kl_discrete + kl_continuous,
            kl_discrete=kl_discrete,
            kl_continuous=kl_continuous,
            var=var,
            perplexity=perplexity(indices, self.num_codes),
        )
