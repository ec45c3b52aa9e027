"""Small convolutional VQ-VAEs: one level (VQ-VAE) and two levels, top and bottom (VQ-VAE-2).

Papers and notes:
    - VQ-VAE, van den Oord et al. 2017 (papers/oord2017neural.md): encoder, quantiser, decoder,
      trained on L = ||x - D(z_q)||^2 + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 (Eq. 3, with a
      Gaussian likelihood, i.e. the squared error, as the reconstruction term).
    - VQ-VAE-2, Razavi et al. 2019 (papers/razavi2019generating.md): a hierarchy of two code maps.
      The top map is coarser (here 1/8 of the image side) and holds global structure; the bottom
      map (1/4) is quantised from bottom-level features concatenated with the decoded top codes,
      so it is conditioned on the top; the decoder reads both maps. Codebooks use the EMA update.

The quantiser, its losses and the EMA update are reference_impls.vq (shared, not copied here).

Notation (code -> paper):
    h_bottom, h_top   encoder outputs before quantisation (z_e per level)
    q_top, q_bottom   quantised maps e_top, e_bottom (z_q per level)
    beta              commitment weight
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import QuantizerOutput, VectorQuantizer


def toy_images(n: int, size: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
    """n single-channel images (n, 1, size, size) in [0, 1]: half Gaussian blobs, half stripes."""
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)
    centre = torch.rand(n, 2, generator=generator) * (size - 4) + 2  # (n, 2)
    width = torch.rand(n, 1, 1, generator=generator) * 2.0 + 1.5  # (n, 1, 1)
    d2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2  # (n, S, S)
    blobs = torch.exp(-d2 / (2 * width**2))
    period = torch.randint(3, 7, (n, 1, 1), generator=generator).float()
    phase = torch.rand(n, 1, 1, generator=generator) * 6.2832
    vertical = torch.rand(n, 1, 1, generator=generator) < 0.5
    axis = torch.where(vertical, xx, yy)  # (n, S, S)
    stripes = 0.5 + 0.5 * torch.sin(2 * 3.14159265 * axis / period + phase)
    is_blob = (torch.arange(n) % 2 == 0)[:, None, None]
    return torch.where(is_blob, blobs, stripes).unsqueeze(1)  # (n, 1, S, S)


@torch.no_grad()
def init_codebook_from_data(
    quantizer: VectorQuantizer, z_e: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """Set the K codes to K encoder outputs drawn from z_e (B, D, *S), so no code starts far from the data.

    Not in the VQ-VAE paper: a common data-dependent start (k-means-style seeding) that keeps a tiny
    model on a tiny budget from collapsing onto the one code nearest the origin.
    """
    rows = z_e.movedim(1, -1).reshape(-1, z_e.shape[1])  # (N, D)
    pick = torch.randperm(rows.shape[0], generator=generator)[: quantizer.num_codes]
    quantizer.codebook.copy_(quantizer.in_proj(rows[pick]))
    if quantizer.ema:
        quantizer.embed_sum.copy_(quantizer.codebook * quantizer.cluster_size.unsqueeze(1))


def _down(c_in: int, c_out: int) -> nn.Module:
    """Halve the resolution: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU())


def _up(c_in: int, c_out: int, last: bool = False) -> nn.Module:
    """Double the resolution: (B, c_in, H, W) -> (B, c_out, 2H, 2W); no ReLU on the output layer."""
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    return conv if last else nn.Sequential(conv, nn.ReLU())


class VQVAE(nn.Module):
    """One-level VQ-VAE: (B, C, H, W) -> codes on an (H/f, W/f) grid, f = 2**downsample -> reconstruction."""

    def __init__(
        self,
        in_ch: int = 1,
        hidden: int = 32,
        num_codes: int = 32,
        code_dim: int = 16,
        beta: float = 0.25,
        ema: bool = False,
        downsample: int = 2,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        downs = [_down(in_ch if i == 0 else hidden, hidden) for i in range(downsample)]
        self.encoder = nn.Sequential(*downs, nn.Conv2d(hidden, code_dim, 1))
        self.quantizer = VectorQuantizer(num_codes, code_dim, beta=beta, ema=ema, generator=generator)
        ups = [
            _up(hidden, in_ch if i == downsample - 1 else hidden, last=i == downsample - 1) for i in range(downsample)
        ]
        self.decoder = nn.Sequential(nn.Conv2d(code_dim, hidden, 3, 1, 1), nn.ReLU(), *ups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        z_e = self.encoder(x)  # (B, D, H/f, W/f)
        q = self.quantizer(z_e)
        return self.decoder(q.z_q), q  # (B, C, H, W)

    def init_codes(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Seed the codebook with encoder outputs of a batch x (see init_codebook_from_data)."""
        with torch.no_grad():
            init_codebook_from_data(self.quantizer, self.encoder(x), generator)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token grid (B, h, w) -> image (B, C, H, W): what a prior's samples go through."""
        return self.decoder(self.quantizer.lookup(indices))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 3: squared reconstruction error + codebook loss + beta * commitment loss."""
        x_hat, q = self(x)
        return F.mse_loss(x_hat, x) + q.loss


@dataclass
class VQVAE2Output:
    x_hat: torch.Tensor  # (B, C, H, W)
    top: QuantizerOutput  # codes on the (H/8, W/8) grid
    bottom: QuantizerOutput  # codes on the (H/4, W/4) grid


class VQVAE2(nn.Module):
    """Two-level VQ-VAE-2 with EMA codebooks: a top map at 1/8 and a bottom map at 1/4 of the image side."""

    def __init__(
        self,
        in_ch: int = 1,
        hidden: int = 32,
        num_codes: int = 32,
        code_dim: int = 16,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.enc_bottom = nn.Sequential(_down(in_ch, hidden), _down(hidden, hidden))  # x -> h_bottom, 1/4
        self.enc_top = nn.Sequential(_down(hidden, hidden), nn.Conv2d(hidden, code_dim, 1))  # h_bottom -> h_top, 1/8
        self.quant_top = VectorQuantizer(num_codes, code_dim, beta=beta, ema=True, generator=generator)
        self.dec_top = nn.ConvTranspose2d(code_dim, code_dim, 4, 2, 1)  # q_top -> 1/4, to condition the bottom
        self.pre_bottom = nn.Conv2d(hidden + code_dim, code_dim, 1)  # [h_bottom, dec_top(q_top)] -> z_e bottom
        self.quant_bottom = VectorQuantizer(num_codes, code_dim, beta=beta, ema=True, generator=generator)
        self.up_top = nn.ConvTranspose2d(code_dim, code_dim, 4, 2, 1)  # q_top -> 1/4, for the decoder
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * code_dim, hidden, 3, 1, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, in_ch, 4, 2, 1),
        )

    def bottom_input(self, h_bottom: torch.Tensor, q_top: torch.Tensor) -> torch.Tensor:
        """The bottom level's pre-quantisation map (B, D, H/4, W/4), conditioned on the top codes."""
        return self.pre_bottom(torch.cat([h_bottom, self.dec_top(q_top)], dim=1))

    def decode(self, q_top: torch.Tensor, q_bottom: torch.Tensor) -> torch.Tensor:
        """Both quantised maps -> image: the top map is upsampled and concatenated with the bottom map."""
        return self.decoder(torch.cat([self.up_top(q_top), q_bottom], dim=1))  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> VQVAE2Output:
        h_bottom = self.enc_bottom(x)  # (B, hidden, H/4, W/4)
        top = self.quant_top(self.enc_top(h_bottom))  # z_q (B, D, H/8, W/8)
        bottom = self.quant_bottom(self.bottom_input(h_bottom, top.z_q))  # z_q (B, D, H/4, W/4)
        return VQVAE2Output(self.decode(top.z_q, bottom.z_q), top, bottom)

    def init_codes(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Seed both codebooks with the pre-quantisation maps of a batch x (see init_codebook_from_data)."""
        with torch.no_grad():
            h_bottom = self.enc_bottom(x)
            init_codebook_from_data(self.quant_top, self.enc_top(h_bottom), generator)
            q_top = self.quant_top.lookup(self.quant_top(self.enc_top(h_bottom)).indices)
            init_codebook_from_data(self.quant_bottom, self.bottom_input(h_bottom, q_top), generator)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction error + beta * commitment at both levels (EMA codebooks need no codebook loss)."""
        out = self(x)
        return F.mse_loss(out.x_hat, x) + out.top.loss + out.bottom.loss


def fit(
    model: nn.Module,
    data: torch.Tensor,
    steps: int,
    lr: float = 3e-3,
    batch: int = 32,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Adam on model.loss over random minibatches of data; returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch,), generator=generator)
        loss = model.loss(data[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
