"""GigaTok's semantic regularisation: decoder features of a 1-D tokenizer pulled toward a frozen encoder's features.

Paper and note:
    - GigaTok, Xiong et al. 2025 (papers/xiong2025gigatok.md): semantic regularisation of the
      tokenizer while it is scaled, as released in SilentView/GigaTok
      (tokenizer/tokenizer_image/vq/vq_loss.py, vq/blocks.py, vq/vq_train.py).
    The tokenizer is the 1-D tokenizer of reference_impls/titok.py (GigaTok's tokenizers are 1-D
    Q-Former-style ones); the pre-trained visual encoder (DINOv2 in the paper) cannot be loaded here
    and is replaced by `FrozenPatchEncoder`, a seeded random patch encoder: a structural stand-in
    with the same interface (one feature vector per patch, no gradient), not a semantic model.

Equations implemented:
    features   h_l = the decoder's patch-query states after layer l         (B, N, D)
               z   = phi(h_l), phi a 3-layer MLP D -> 4D -> 4D -> D_t with SiLU
    teacher    t   = E(x), the frozen encoder's patch features             (B, N, D_t)
    regulariser  L_reg = (1 / B) sum_b (1 / N) sum_n  - cos(z_{b,n}, t_{b,n})
                 = -1 when every feature points along its teacher feature, +1 when opposite
    objective  L = L_rec + L_VQ + lambda L_reg          (lambda = 0.5 by default in the released trainer)

Notation (code -> paper / released code):
    layer      l (distill_depth = 3 in configs/vq/*.yaml)     projector   phi (the decoder's distill_mlp)
    teacher    the frozen pre-trained encoder (dinov2-vit-b by default)    weight   lambda (proj_weight)

Left out: the perceptual, adversarial and entropy losses (the released XL-XXL config sets
entropy_loss_ratio 0.005), the CNN stages around the transformer, the rotation-trick gradient the
released config enables, and the AR prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.titok import TiTok, patchify


def semantic_regularization(features: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_reg = mean over batch and positions of -cos(features, teacher); both (B, N, D_t). The teacher is detached."""
    if features.shape != teacher.shape:
        raise ValueError(
            f"features {tuple(features.shape)} and teacher features {tuple(teacher.shape)} differ; "
            "expected one teacher vector per decoder position"
        )
    cos = (F.normalize(features, dim=-1) * F.normalize(teacher.detach(), dim=-1)).sum(-1)  # (B, N)
    return -cos.mean()


class FeatureProjector(nn.Module):
    """phi: the 3-layer SiLU MLP from decoder width D to the teacher's width D_t (the released distill_mlp)."""

    def __init__(self, dim: int, teacher_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, teacher_dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)  # (B, N, D) -> (B, N, D_t)


class FrozenPatchEncoder(nn.Module):
    """Stand-in for the frozen pre-trained encoder: seeded random patch embedding, GELU, linear; no gradient."""

    def __init__(self, patch_size: int, dim: int, channels: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        fan_in = channels * patch_size * patch_size
        self.patch_size = patch_size
        self.register_buffer("w1", torch.randn(fan_in, dim, generator=g) / fan_in**0.5)
        self.register_buffer("w2", torch.randn(dim, dim, generator=g) / dim**0.5)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.gelu(patchify(images, self.patch_size) @ self.w1) @ self.w2  # (B, N, D_t)


@dataclass
class GigaTokLosses:
    reconstruction: torch.Tensor  # (B, C, H, W)
    rec_loss: torch.Tensor
    vq_loss: torch.Tensor
    reg_loss: torch.Tensor  # L_reg, in [-1, 1]
    total: torch.Tensor  # rec + vq + lambda * reg


class SemanticallyRegularizedTokenizer(nn.Module):
    """A 1-D tokenizer whose decoder layer `layer` is regularised toward a frozen encoder (lambda = reg_weight)."""

    def __init__(self, tokenizer: TiTok, teacher: nn.Module, *, teacher_dim: int, layer: int, reg_weight: float = 0.5):
        super().__init__()
        if not 1 <= layer <= len(tokenizer.decoder.blocks):
            raise ValueError(f"layer {layer} is not a decoder layer; expected 1 .. {len(tokenizer.decoder.blocks)}")
        self.tokenizer, self.teacher, self.layer, self.reg_weight = tokenizer, teacher, layer, reg_weight
        self.projector = FeatureProjector(tokenizer.decoder.dim, teacher_dim)

    def forward(self, images: torch.Tensor) -> GigaTokLosses:
        p = self.tokenizer.patch_size
        grid = (images.shape[2] // p, images.shape[3] // p)
        q = self.tokenizer.quantize(images)
        rec, inner = self.tokenizer.decoder(q.z_q.transpose(1, 2), grid, hidden_at=self.layer)  # inner: (B, N, D)
        reg = semantic_regularization(self.projector(inner), self.teacher(images))
        rec_loss = (rec - images).square().mean()
        return GigaTokLosses(rec, rec_loss, q.loss, reg, rec_loss + q.loss + self.reg_weight * reg)
