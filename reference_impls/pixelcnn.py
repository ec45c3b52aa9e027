"""Gated PixelCNN: masked convolutions in vertical and horizontal stacks with tanh-sigmoid gates.

Papers and notes:
    - Conditional Image Generation with PixelCNN Decoders, van den Oord et al. 2016
      (papers/oord2016conditional.md): the gated activation (Eq. 2), its conditional form
      (Eq. 4) and the two-stack architecture of Sec. 2.2 that removes the blind spot.

Equations implemented:
    p(x) = prod_i p(x_i | x_1, ..., x_{i-1})                   (raster order)
    Eq. 2   y = tanh(W_{k,f} * x) . sigmoid(W_{k,g} * x)       (. is the element-wise product)
    Eq. 4   y = tanh(W_{k,f} * x + V_{k,f}^T h) . sigmoid(W_{k,g} * x + V_{k,g}^T h)
    vertical stack:   an (k//2 + 1) x k convolution over the rows above and the current row;
                      its output is shifted down one row before it feeds the horizontal stack,
                      so the horizontal stack at row i sees only rows < i through it
    horizontal stack: a 1 x (k//2 + 1) convolution over the current row up to the current column
                      (type B), or strictly left of it in the first layer (type A); it receives the
                      shifted vertical features through a 1 x 1 convolution and has a residual path
    MaskedConv2d (the original PixelCNN, for comparison): a k x k kernel zeroed below the centre
                      row and right of the centre; type A also zeroes the centre. Stacking it leaves
                      a blind spot above and to the right of each pixel.

Notation (code -> paper):
    v, h_stack   vertical and horizontal stack feature maps      cond   h (conditioning vector)
    gate(a)      tanh(a_f) . sigmoid(a_g) on the two halves of a  channels  p (feature maps)

The module models one input channel (grey levels); the paper's RGB sub-pixel masks are left out.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def gate(a: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on pre-activations a (B, 2p, H, W): tanh(first half) * sigmoid(second half) -> (B, p, H, W)."""
    a_f, a_g = a.chunk(2, dim=1)
    return torch.tanh(a_f) * torch.sigmoid(a_g)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Move every row one step down (row 0 becomes zeros): (B, C, H, W) -> (B, C, H, W)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class MaskedConv2d(nn.Conv2d):
    """The original PixelCNN's masked k x k convolution (type 'A' excludes the centre pixel, 'B' includes it)."""

    def __init__(self, mask_type: str, c_in: int, c_out: int, k: int):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones(k, k)
        mask[k // 2, k // 2 + (mask_type == "B") :] = 0  # right of the centre (and the centre for A)
        mask[k // 2 + 1 :] = 0  # rows below the centre
        self.register_buffer("mask", mask[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack (Fig. 2 of the paper)."""

    def __init__(self, channels: int, k: int, first: bool, cond_dim: int | None = None, in_channels: int | None = None):
        super().__init__()
        c_in = in_channels or channels
        self.first, self.k = first, k
        # vertical: rows i - k//2 .. i, columns j - k//2 .. j + k//2
        self.v_conv = nn.Conv2d(c_in, 2 * channels, (k // 2 + 1, k))
        # horizontal: columns j - k//2 .. j (type B) or j - k//2 .. j - 1 (type A, first layer)
        self.h_width = k // 2 if first else k // 2 + 1
        self.h_conv = nn.Conv2d(c_in, 2 * channels, (1, self.h_width))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(cond_dim, 4 * channels, bias=False) if cond_dim else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None):
        # v, h: (B, C, H, W); cond: (B, cond_dim)
        k = self.k
        v_pre = self.v_conv(F.pad(v, (k // 2, k // 2, k // 2, 0)))  # (B, 2p, H, W), rows <= i
        h_in = F.pad(h, (self.h_width, 0, 0, 0))[..., :-1] if self.first else F.pad(h, (self.h_width - 1, 0, 0, 0))
        h_pre = self.h_conv(h_in) + self.v_to_h(shift_down(v_pre))  # (B, 2p, H, W), row i left part + rows < i
        if self.cond is not None and cond is not None:
            cv, ch = self.cond(cond)[:, :, None, None].chunk(2, dim=1)  # Eq. 4: V^T h, (B, 2p, 1, 1) each
            v_pre, h_pre = v_pre + cv, h_pre + ch
        v_out = gate(v_pre)
        h_out = self.h_out(gate(h_pre))
        if not self.first:
            h_out = h_out + h  # residual connection in the horizontal stack
        return v_out, h_out


class GatedPixelCNN(nn.Module):
    """A stack of gated layers on a one-channel image; returns per-pixel logits over n_classes grey levels.

    forward(x (B, 1, H, W) in [0, 1], cond (B, cond_dim) or None) -> logits (B, n_classes, H, W);
    logits at pixel (i, j) depend only on pixels strictly before (i, j) in raster order.
    """

    def __init__(
        self, channels: int = 16, n_layers: int = 4, k: int = 3, n_classes: int = 4, cond_dim: int | None = None
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            GatedLayer(channels, k, first=(i == 0), cond_dim=cond_dim, in_channels=1 if i == 0 else None)
            for i in range(n_layers)
        )
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, n_classes, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        # The vertical stack may see row i itself: it reaches the horizontal stack only shifted down.
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.out(h)  # (B, n_classes, H, W)


class OriginalPixelCNN(nn.Module):
    """The original single-stack PixelCNN (a type-A layer, then type-B layers), which has a blind spot."""

    def __init__(self, channels: int = 16, n_layers: int = 4, k: int = 3, n_classes: int = 4):
        super().__init__()
        convs = [MaskedConv2d("A", 1, channels, k)] + [
            MaskedConv2d("B", channels, channels, k) for _ in range(n_layers - 1)
        ]
        self.convs = nn.ModuleList(convs)
        self.out = nn.Conv2d(channels, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return self.out(x)
