"""Latent diffusion: a KL-regularised autoencoder, latent scaling and a cross-attention UNet.

Paper and note: LDM, Rombach, Blattmann, Lorenz, Esser & Ommer 2022 (papers/rombach2022high.md).
The shared pieces are reused by the Video LDM module (reference_impls/video_ldm.py,
papers/blattmann2023align.md) and the LION module (reference_impls/lion.py, papers/zeng2022lion.md).

Equations implemented (LDM, Sec. 3.1-3.3 and the appendix on the first stage):
    first stage    z = E(x) in R^{h x w x c},  h = H / f,  w = W / f,  f = 2^m
    KL-reg         E outputs (mu, log sigma^2);  z = mu + sigma * n,  n ~ N(0, I)
                   KL(q(z|x) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2)
    scaling        z <- s z with s = 1 / std(z) estimated on data, so the diffusion model
                   sees latents of roughly unit variance
    Eq. 2 / 15     L_LDM = E_{E(x), y, eps, t} ||eps - eps_theta(z_t, t, tau_theta(y))||^2
                   (computed with ddpm.eps_loss on the scaled latents)
    Sec. 3.3       Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,
                   Q = W_Q phi_i(z_t),  K = W_K tau_theta(y),  V = W_V tau_theta(y)
    sampling       z_0 ~ p_theta (ddpm.p_sample_loop), x = D(z_0 / s)

Notation (code -> paper):
    encoder / decoder   E / D               num_down   m, with f = 2^m
    mean, logvar        mu, log sigma^2     scale_factor   s (the 1 / sigma-hat rescaling)
    h (UNet features)   phi_i(z_t)          context    tau_theta(y), a (B, L, d_tau) sequence
    unet                eps_theta
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls import ddpm
from reference_impls.attention import scaled_dot_product_attention, sinusoidal_embedding

# ---------------------------------------------------------------------------------------------
# First stage: the KL-regularised autoencoder
# ---------------------------------------------------------------------------------------------


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mean, exp(logvar)) || N(0, I)), summed over all but the batch dim: (B,)."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)  # (B, ...)
    return kl.flatten(1).sum(dim=1)


def diagonal_gaussian_sample(
    mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Reparameterised draw z = mean + exp(logvar / 2) * n."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + (0.5 * logvar).exp() * noise


class KLAutoencoder(nn.Module):
    """A conv autoencoder with downsampling factor f = 2^num_down and a diagonal-Gaussian latent."""

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, hidden: int = 16, num_down: int = 2):
        super().__init__()
        self.num_down = num_down
        enc = [nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(num_down):  # each halves H and W
            enc += [nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(hidden, 2 * latent_channels, 3, padding=1)]  # mean and logvar
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(latent_channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(num_down):  # each doubles H and W
            dec += [nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1), nn.SiLU()]
        dec += [nn.Conv2d(hidden, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def downsampling_factor(self) -> int:
        return 2**self.num_down

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> mean, logvar, each (B, c, H/f, W/f)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, c, h, w) -> x_hat (B, C, h f, w f)."""
        return self.decoder(z)

    def loss(self, x: torch.Tensor, kl_weight: float = 1e-6, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction (L2 here; LDM adds perceptual and patch-GAN terms) plus a small KL weight."""
        mean, logvar = self.encode(x)
        x_hat = self.decode(diagonal_gaussian_sample(mean, logvar, generator))
        return F.mse_loss(x_hat, x) + kl_weight * kl_to_standard_normal(mean, logvar).mean()


def estimate_scale_factor(latents: torch.Tensor) -> float:
    """s = 1 / std of the latents, so that s z has unit variance over a batch."""
    return 1.0 / latents.flatten().std().item()


# ---------------------------------------------------------------------------------------------
# Second stage: a small UNet with cross-attention to a context sequence
# ---------------------------------------------------------------------------------------------


class CrossAttention(nn.Module):
    """Sec. 3.3: queries from the UNet features, keys and values from the context tau_theta(y)."""

    def __init__(self, query_dim: int, context_dim: int, n_heads: int = 2, head_dim: int = 8):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        inner = n_heads * head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)  # W_Q
        self.to_k = nn.Linear(context_dim, inner, bias=False)  # W_K
        self.to_v = nn.Linear(context_dim, inner, bias=False)  # W_V
        self.to_out = nn.Linear(inner, query_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, heads, n, head_dim)

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """h (B, N, query_dim) flattened features, context (B, L, context_dim) -> (B, N, query_dim)."""
        q, k, v = self._heads(self.to_q(h)), self._heads(self.to_k(context)), self._heads(self.to_v(context))
        out = scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between, and a skip."""

    def __init__(self, ch: int, temb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(4, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, ch)
        self.norm2, self.conv2 = nn.GroupNorm(4, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.temb(temb)[:, :, None, None]  # (B, ch, h, w)
        return x + self.conv2(F.silu(self.norm2(h)))


class SpatialTransformer(nn.Module):
    """Flatten (B, ch, h, w) to h*w tokens, apply residual cross-attention, fold back."""

    def __init__(self, ch: int, context_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(ch)
        self.attn = CrossAttention(ch, context_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, ch)
        tokens = tokens + self.attn(self.norm(tokens), context)
        return tokens.transpose(1, 2).reshape(b, c, hh, ww)


class TinyUNet(nn.Module):
    """eps_theta(z_t, t, tau(y)): one down level, a cross-attention middle, one up level with a skip."""

    def __init__(self, latent_channels: int = 4, ch: int = 16, context_dim: int = 8, num_steps: int = 1000):
        super().__init__()
        self.num_steps, self.temb_dim = num_steps, 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, self.temb_dim), nn.SiLU(), nn.Linear(self.temb_dim, self.temb_dim))
        self.ch = ch
        self.inp = nn.Conv2d(latent_channels, ch, 3, padding=1)
        self.down_block = ResBlock(ch, self.temb_dim)
        self.down = nn.Conv2d(ch, ch, 4, stride=2, padding=1)
        self.mid_block = ResBlock(ch, self.temb_dim)
        self.mid_attn = SpatialTransformer(ch, context_dim)
        self.up = nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)
        self.up_block = ResBlock(ch, self.temb_dim)
        self.merge = nn.Conv2d(2 * ch, ch, 1)
        self.out = nn.Sequential(nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, latent_channels, 3, padding=1))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """z_t (B, c, h, w) with even h, w; t (B,) long; context (B, L, context_dim) -> eps (B, c, h, w)."""
        temb = self.temb(sinusoidal_embedding(t, self.ch))  # (B, temb_dim)
        h0 = self.down_block(self.inp(z_t), temb)  # (B, ch, h, w)
        h = self.mid_attn(self.mid_block(self.down(h0), temb), context)  # (B, ch, h/2, w/2)
        h = self.up_block(self.up(h), temb)  # (B, ch, h, w)
        return self.out(self.merge(torch.cat([h, h0], dim=1)))


# ---------------------------------------------------------------------------------------------
# The two stages together
# ---------------------------------------------------------------------------------------------


class LatentDiffusion(nn.Module):
    """A frozen first stage, a scale factor and a conditional eps-prediction UNet in latent space."""

    def __init__(self, autoencoder: KLAutoencoder, unet: TinyUNet, schedule: ddpm.Schedule, scale_factor: float = 1.0):
        super().__init__()
        self.autoencoder, self.unet, self.schedule = autoencoder, unet, schedule
        self.scale_factor = scale_factor
        self.autoencoder.requires_grad_(False)  # the first stage is trained before and kept fixed

    @torch.no_grad()
    def encode_latents(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, C, H, W) -> s z, with z a draw from the encoder's Gaussian: (B, c, H/f, W/f)."""
        mean, logvar = self.autoencoder.encode(x)
        return self.scale_factor * diagonal_gaussian_sample(mean, logvar, generator)

    def loss(self, x: torch.Tensor, context: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Eq. 15: L_simple on the scaled latents, conditioned on the context sequence."""
        z0 = self.encode_latents(x, generator)
        return ddpm.eps_loss(self.schedule, lambda z_t, t: self.unet(z_t, t, context), z0, generator)

    @torch.no_grad()
    def sample(
        self, latent_shape: tuple[int, ...], context: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ancestral sampling in latent space, then one decoder pass: (B, C, H, W)."""
        z0 = ddpm.p_sample_loop(self.schedule, lambda z_t, t: self.unet(z_t, t, context), latent_shape, generator)
        return self.autoencoder.decode(z0 / self.scale_factor)
