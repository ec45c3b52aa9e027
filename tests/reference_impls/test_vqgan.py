"""Properties of reference_impls.vqgan: the adaptive GAN weight, the hinge losses and the patch
discriminator of VQGAN (Esser et al. 2021)."""

import pytest
import torch
import torch.nn as nn

from reference_impls.vqgan import (
    PatchDiscriminator,
    RandomFeaturePerceptual,
    adaptive_weight,
    generator_gan_loss,
    hinge_d_loss,
    vqgan_generator_loss,
)


def test_adaptive_weight_equals_ratio_of_gradient_norms_by_hand():
    # last layer y = W v; L_rec = 1/2 ||W v - t||^2 -> grad (W v - t) v^T;  L_GAN = -c . (W v) -> grad -c v^T
    W = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    v, t, c = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), torch.tensor([0.5, -2.0])
    y = W @ v
    rec = 0.5 * ((y - t) ** 2).sum()
    gan = -(c * y).sum()
    r = W.detach() @ v - t  # (5, -4)
    norm_rec = torch.outer(r, v).norm()  # ||r|| ||v|| = sqrt(41) sqrt(10)
    norm_gan = torch.outer(c, v).norm()  # ||c|| ||v|| = sqrt(4.25) sqrt(10)
    lam = adaptive_weight(rec, gan, W, delta=1e-4)
    assert lam.item() == pytest.approx((norm_rec / (norm_gan + 1e-4)).item(), rel=1e-6)
    assert lam.item() == pytest.approx((41**0.5) / (4.25**0.5), rel=1e-4)
    assert not lam.requires_grad


def test_adaptive_weight_is_clamped():
    W = torch.ones(2, 2, requires_grad=True)
    rec = (W * 1e3).sum()
    gan = (W * 0.0).sum() + 0.0 * W.sum()  # zero gradient: ratio would be 2000 / 1e-4
    assert adaptive_weight(rec, gan, W).item() == pytest.approx(1e4)


def test_hinge_losses_at_known_logits():
    real = torch.tensor([2.0, 0.5])  # relu(1 - real) = (0, 0.5) -> mean 0.25
    fake = torch.tensor([-2.0, 0.5])  # relu(1 + fake) = (0, 1.5) -> mean 0.75
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))
    assert generator_gan_loss(fake).item() == pytest.approx(0.75)
    # a confident, correct discriminator pays nothing
    assert hinge_d_loss(torch.tensor([1.5, 3.0]), torch.tensor([-1.0, -4.0])).item() == 0.0


def test_discriminator_returns_a_patch_map_of_local_logits():
    torch.manual_seed(0)
    disc = PatchDiscriminator(in_ch=3, ch=8, n_layers=2).eval()
    x = torch.randn(1, 3, 32, 32)
    out = disc(x)
    assert out.shape[:2] == (1, 1) and out.shape[2] > 1 and out.shape[3] > 1
    x2 = x.clone()
    x2[..., :4, :4] += 5.0  # change only the top-left corner
    changed = (disc(x2) - out).abs()[0, 0] > 1e-6
    assert changed[0, 0]  # the patch over the corner sees it
    assert not changed[-1, -1]  # the far patch does not: each logit judges one receptive field


def test_perceptual_stand_in_is_frozen_and_zero_only_on_equal_images():
    p = RandomFeaturePerceptual(in_ch=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert all(not q.requires_grad for q in p.parameters())
    assert p(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert p(x, x.flip(-1)).item() > 1e-3


def test_generator_loss_uses_adaptive_weight_on_gan_term():
    torch.manual_seed(0)
    last = nn.Conv2d(4, 3, 3, 1, 1)  # stands for the decoder's last layer
    h = torch.randn(2, 4, 16, 16)
    x = torch.rand(2, 3, 16, 16)
    x_hat = last(h)
    disc = PatchDiscriminator(in_ch=3, ch=8, n_layers=2)
    vq_loss = torch.tensor(0.3)
    loss, lam = vqgan_generator_loss(x, x_hat, vq_loss, disc, last.weight)
    rec = (x - x_hat).abs().mean()
    gan = generator_gan_loss(disc(x_hat))
    torch.testing.assert_close(loss, rec + vq_loss + lam * gan)
    torch.testing.assert_close(lam, adaptive_weight(rec, gan, last.weight))
    assert lam.item() > 0
