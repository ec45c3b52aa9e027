"""SimVQ: the codebook as C W, a fixed random basis C passed through one learnable linear layer W.

Paper and note:
    - SimVQ, Zhu et al. 2025, "Addressing Representation Collapse in Vector Quantized Models with
      One Linear Layer" (papers/zhu2025addressing.md); official code youngsheen/SimVQ, whose
      `taming/modules/vqvae/quantize.py` (class SimVQ) and `configs/imagenet_simvq_128_B.yaml`
      this module follows.

Mechanism (K codes of dimension d):
    basis       C (K, d) ~ N(0, 1/d) entrywise (std d^-0.5), drawn once and never trained
    codebook    E = C W: in the official code W is nn.Linear(d, d), a weight and a bias, so
                e_k = W c_k + b (affine, not strictly linear)
    lookup      k_i = argmin_k ||z_i - e_k||^2,   z_q,i = e_{k_i}                (VQ-VAE Eq. 1-2)
    loss        L = ||z_q - sg[z]||^2 + beta ||sg[z_q] - z||^2,   beta = 0.25
                (the released configs set legacy: false, which gives VQ-VAE's Eq. 3 weighting:
                 the codebook term, through z_q, trains W; the commitment term trains the encoder.
                 legacy=True, the class's default, swaps the weights: beta on the codebook term.)
    output      z + sg[z_q - z]                                      (straight-through estimator)

In plain VQ the codebook term's gradient reaches only the rows that were chosen; here it reaches W,
and every code e_k = W c_k + b moves with W, so unchosen codes follow the chosen ones and the whole
space spanned by the codebook is optimised at once. The mechanism is VQGAN-LC's frozen table plus a
trained projector (reference_impls/vqgan_lc.py) with a random table in place of clustered features;
this module reuses that class.

Notation (code -> paper / official code):
    table       C, `embedding.weight` (requires_grad False)
    projector   W, `embedding_proj`
    codes()     C W, `quant_codebook`
"""

from __future__ import annotations

import torch

from reference_impls.vqgan_lc import FrozenTableVQ


class SimVQ(FrozenTableVQ):
    """SimVQ quantiser on channel-first maps (B, d, *S): codes W(C) with a frozen random C (K, d).

    Options (keyword-only): beta (0.25 in the released configs); legacy=False (the released
    configs) puts beta on the commitment term, legacy=True on the codebook term. W keeps
    nn.Linear's default law, uniform(+-1/sqrt(d)) for weight and bias, drawn from `generator`.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        legacy: bool = False,
        generator: torch.Generator | None = None,
    ):
        basis = torch.randn(num_codes, dim, generator=generator) * dim**-0.5  # C (K, d)
        codebook_weight, commitment_weight = (beta, 1.0) if legacy else (1.0, beta)
        super().__init__(
            table=basis,
            dim=dim,
            codebook_weight=codebook_weight,
            commitment_weight=commitment_weight,
            generator=generator,
        )
        self.beta, self.legacy = beta, legacy
        bound = dim**-0.5
        with torch.no_grad():
            self.projector.weight.copy_((2 * torch.rand(dim, dim, generator=generator) - 1) * bound)
            self.projector.bias.copy_((2 * torch.rand(dim, generator=generator) - 1) * bound)
