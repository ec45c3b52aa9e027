"""Parity with OpenCLIP's contrastive loss (mlfoundations/open_clip, package `open_clip_torch` 3.3.0).

Module compared: reference_impls.clip's clip_logits and clip_loss against open_clip/loss.py's
ClipLoss (one process). open_clip's `__init__` imports torchvision and timm for its models, which
the loss never calls; the package is installed without dependencies (tests/parity/install.sh)
and `open_clip.loss` is imported with open_clip's `__init__` skipped.

One convention differs: ClipLoss takes features its model has already l2-normalised, ours
normalises inside clip_logits; the peer is fed normalised features. Tolerance: float32, 1e-6.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.clip import clip_logits, clip_loss


@pytest.fixture(scope="module")
def loss_module(import_peer):
    return import_peer(
        "open_clip.loss", bare=("open_clip",), reason="open_clip_torch is not installed (bash tests/parity/install.sh)"
    )


def features(seed: int, n: int = 16, d: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).requires_grad_(), torch.randn(n, d, generator=g).requires_grad_()


@pytest.mark.parametrize("scale", [1 / 0.07, 100.0])  # CLIP's initial exp(t) and its clip at 100
def test_loss_and_gradients_to_features_and_temperature_equal_clip_loss(loss_module, scale):
    img, txt = features(0)
    img_p, txt_p = (x.detach().clone().requires_grad_() for x in (img, txt))
    log_t = torch.tensor(math.log(scale), requires_grad=True)
    log_t_p = log_t.detach().clone().requires_grad_()
    ours = clip_loss(img, txt, log_t.exp())
    theirs = loss_module.ClipLoss()(F.normalize(img_p, dim=-1), F.normalize(txt_p, dim=-1), log_t_p.exp())
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    ours.backward()
    theirs.backward()
    for a, b in ((img.grad, img_p.grad), (txt.grad, txt_p.grad), (log_t.grad, log_t_p.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_logits_equal_both_directions_of_the_peer(loss_module):
    img, txt = features(1, n=8)
    per_image, per_text = loss_module.ClipLoss().get_logits(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), 20.0)
    ours = clip_logits(img, txt, 20.0)
    torch.testing.assert_close(ours, per_image, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.t(), per_text, rtol=1e-6, atol=1e-6)
