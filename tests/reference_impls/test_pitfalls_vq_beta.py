"""Pitfall: where beta sits in the VQ loss (papers/oord2017neural.md, papers/esser2021taming.md).

The paper weights the commitment term: ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2. The released
taming-transformers quantiser (CompVis/taming-transformers taming/modules/vqvae/quantize.py,
VectorQuantizer2 with its default legacy=True) computes
mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2), i.e. beta on the codebook term. Our
vq.vq_losses follows the paper; the legacy form is written out here only to show the difference.
"""

from __future__ import annotations

import torch

from reference_impls.vq import vq_losses


def taming_legacy_loss(z_e: torch.Tensor, z_q: torch.Tensor, beta: float) -> torch.Tensor:
    """The legacy=True branch of taming's VectorQuantizer2.forward, transcribed."""
    return torch.mean((z_q.detach() - z_e) ** 2) + beta * torch.mean((z_q - z_e.detach()) ** 2)


def _grads(loss_fn, beta: float):
    g = torch.Generator().manual_seed(0)
    z_e = torch.randn(16, 4, generator=g, requires_grad=True)
    z_q = torch.randn(16, 4, generator=g, requires_grad=True)
    loss_fn(z_e, z_q, beta).backward()
    return z_e.grad.clone(), z_q.grad.clone()


def ours(z_e, z_q, beta):
    return vq_losses(z_e, z_q, beta)[2]


def test_paper_form_scales_the_encoder_gradient_and_leaves_the_codebook_gradient_alone():
    ge1, gq1 = _grads(ours, 0.25)
    ge2, gq2 = _grads(ours, 1.0)
    torch.testing.assert_close(gq1, gq2)
    torch.testing.assert_close(ge2, 4 * ge1)


def test_taming_legacy_form_scales_the_codebook_gradient_instead():
    ge1, gq1 = _grads(taming_legacy_loss, 0.25)
    ge2, gq2 = _grads(taming_legacy_loss, 1.0)
    torch.testing.assert_close(ge1, ge2)
    torch.testing.assert_close(gq2, 4 * gq1)


def test_the_two_forms_agree_only_at_beta_one():
    for beta, same in ((1.0, True), (0.25, False)):
        a = _grads(ours, beta)
        b = _grads(taming_legacy_loss, beta)
        assert all(torch.allclose(x, y) for x, y in zip(a, b, strict=True)) is same
