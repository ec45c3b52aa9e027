"""VQGAN's adversarial training of a VQ autoencoder: a hinge-loss PatchGAN discriminator and the
adaptive weight that balances the GAN term against the reconstruction term.

Papers and notes:
    - Taming Transformers for High-Resolution Image Synthesis, Esser, Rombach & Ommer 2021
      (papers/esser2021taming.md), Sec. 3.2 (Eq. 4-7) and the authors' code (CompVis/taming-transformers).
    - The quantiser is reference_impls.vq (papers/oord2017neural.md); not repeated here.

Equations implemented:
    Eq. 7   lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_GAN|| + delta)
            G_L is the last layer of the decoder and delta a small constant for numerical
            stability; the released code uses delta = 1e-4, clamps lambda to [0, 1e4] and detaches
            it, as done here (delta is an argument).
    hinge   L_D = 1/2 (E[relu(1 - D(x))] + E[relu(1 + D(x_hat))])      (the released code's loss)
            L_GAN (generator) = -E[D(x_hat)]
    Eq. 6   L = L_rec + L_VQ + lambda * L_GAN, with L_rec = |x - x_hat| + perceptual(x, x_hat)
    D       a PatchGAN: strided convolutions ending in a one-channel map of per-patch logits.

Perceptual loss: VQGAN uses LPIPS, a VGG network pretrained on ImageNet with learned linear
weights. No pretrained network is downloaded here; RandomFeaturePerceptual stands in for it: a
frozen, seeded, randomly initialised conv net whose channel-normalised features are compared as
LPIPS compares its VGG features (squared differences averaged over positions, summed over layers),
without LPIPS's learned per-channel weights. It is only a structural stand-in: random features are
not calibrated to human judgements.

Notation (code -> paper):
    last_layer   G_L (the decoder's last layer; its weight is what the gradients are taken at)
    delta        delta             disc         D (patch-based discriminator)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, C, H, W) -> (B, 1, H / 2**n_layers - 2, ...) logits, one per overlapping patch."""

    def __init__(self, in_ch: int = 3, ch: int = 16, n_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for _ in range(1, n_layers):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, 2 * c, 4, 1, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(2 * c, 1, 4, 1, 1)]  # one logit per patch
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, h, w)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss 1/2 (mean relu(1 - D(x)) + mean relu(1 + D(x_hat)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_gan_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss -mean D(x_hat)."""
    return -logits_fake.mean()


def adaptive_weight(
    rec_loss: torch.Tensor,
    gan_loss: torch.Tensor,
    last_layer: torch.Tensor,
    delta: float = 1e-4,
    max_weight: float = 1e4,
) -> torch.Tensor:
    """Eq. 7: ||d rec / d G_L|| / (||d gan / d G_L|| + delta), clamped to [0, max_weight], detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = g_rec.norm() / (g_gan.norm() + delta)
    return weight.clamp(0.0, max_weight).detach()


class RandomFeaturePerceptual(nn.Module):
    """Stand-in for LPIPS: distances between channel-normalised features of a frozen random conv net."""

    def __init__(self, in_ch: int = 3, widths: tuple[int, ...] = (16, 32), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.layers = nn.ModuleList()
        c = in_ch
        for w in widths:
            conv = nn.Conv2d(c, w, 3, 2, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (3 * c) ** 0.5)
                conv.bias.zero_()
            self.layers.append(conv)
            c = w
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for conv in self.layers:
            x, y = F.relu(conv(x)), F.relu(conv(y))  # (B, w, h, w')
            nx = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            ny = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (nx - ny).pow(2).sum(dim=1).mean()  # per layer: mean over batch and positions
        return total


def vqgan_generator_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    vq_loss: torch.Tensor,
    disc: nn.Module,
    last_layer: torch.Tensor,
    perceptual: nn.Module | None = None,
    disc_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6 for the autoencoder step: L_rec + L_VQ + lambda * L_GAN; returns (loss, lambda).

    disc_factor = 0 switches the GAN term off (the released code starts it after some steps).
    """
    rec = (x - x_hat).abs().mean()
    if perceptual is not None:
        rec = rec + perceptual(x, x_hat)
    gan = generator_gan_loss(disc(x_hat))
    lam = adaptive_weight(rec, gan, last_layer) if disc_factor > 0 else torch.zeros(())
    return rec + vq_loss + disc_factor * lam * gan, lam
