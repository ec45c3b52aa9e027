"""MAGVIT: 3-D VQ video tokens and COMMIT, conditional masked modelling by interactive tokens.

Papers and notes:
    - MAGVIT, Yu et al. 2023 (papers/yu2023magvit.md): a 3-D convolutional VQ tokenizer that
      compresses time and space, and the multi-task masking in which the condition tokens of a
      task (frame prediction, frame interpolation, outpainting, inpainting, class-conditional
      generation) are embedded into the masked input instead of being prepended.

Rules implemented (COMMIT), for target tokens z, condition tokens z~ (the tokenised condition
video, whose non-condition pixels were padded) and condition region R:
    training   r ~ U[0, 1), s_i ~ U(0, 1), masked = the ceil(gamma(r) N) positions of lowest s_i;
               input_i = z~_i      if i masked and i in R     (condition token, to be refined)
                       = [MASK]    if i masked and i not in R
                       = z_i       if i not masked            (target token, to be reconstructed)
               the three loss terms: refine (masked, in R), predict (masked, outside R),
               reconstruct (not masked). The condition region never shows [MASK].
    decoding   MaskGIT decoding (reference_impls.maskgit.decode) where every position starts
               unknown and a still-unknown position shows z~_i inside R and [MASK] outside.

Notation (code -> paper):
    target        z, the 3-D VQ tokens of the video       cond_tokens   z~, condition tokens
    region        R, positions with a non-padding condition   mask_id   [MASK]
    grid          (t, h, w) token grid, 4 x 16 x 16 for 16-frame clips in the paper
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls.maskgit import cosine_schedule, decode, masked_count
from reference_impls.vq import VectorQuantizer

TASKS = ("frame_prediction", "frame_interpolation", "outpainting", "inpainting", "class_conditional")


class VQ3D(nn.Module):
    """3-D convolutional VQ tokenizer: video (B, C, T, H, W) -> tokens (B, T/st, H/ss, W/ss).

    One strided Conv3d patch embedding and a pointwise Conv3d (the paper's model is a deep
    3-D CNN VQGAN; only the 3-D, non-causal compression is kept here).
    """

    def __init__(
        self,
        channels: int = 3,
        dim: int = 16,
        num_codes: int = 64,
        stride: tuple[int, int, int] = (2, 4, 4),
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(channels, dim, stride, stride=stride), nn.GELU(), nn.Conv3d(dim, dim, 1))
        self.dec = nn.Sequential(
            nn.Conv3d(dim, dim, 1), nn.GELU(), nn.ConvTranspose3d(dim, channels, stride, stride=stride)
        )
        self.quantizer = VectorQuantizer(num_codes, dim, generator=generator)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.enc(video)).indices  # (B, t, h, w)

    def detokenize(self, indices: torch.Tensor) -> torch.Tensor:
        return self.dec(self.quantizer.lookup(indices))  # (B, C, T, H, W)


def condition_region(task: str, grid: tuple[int, int, int], cond_slots: int = 1) -> torch.Tensor:
    """(t, h, w) bool, True where the task gives a condition token.

    frame_prediction: the first cond_slots latent frames; frame_interpolation: the first and last
    latent frames; outpainting: the central half (h/2 x w/2) of every frame is given;
    inpainting: everything except that central box; class_conditional: nothing.
    """
    t, h, w = grid
    region = torch.zeros(t, h, w, dtype=torch.bool)
    centre = (slice(None), slice(h // 4, h // 4 + h // 2), slice(w // 4, w // 4 + w // 2))
    if task == "frame_prediction":
        region[:cond_slots] = True
    elif task == "frame_interpolation":
        region[0] = region[-1] = True
    elif task == "outpainting":
        region[centre] = True
    elif task == "inpainting":
        region[:] = True
        region[centre] = False
    elif task != "class_conditional":
        raise ValueError(f"unknown task {task!r}; one of {TASKS}")
    return region


def pad_condition(video: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Keep the pixels under the condition region, zero the rest (constant padding).

    video (B, C, T, H, W); region (t, h, w) on the token grid, upsampled to pixels.
    """
    t, h, w = region.shape
    T, H, W = video.shape[2:]
    pix = region.repeat_interleave(T // t, 0).repeat_interleave(H // h, 1).repeat_interleave(W // w, 2)
    return video * pix.to(video.dtype)


def commit_inputs(
    target: torch.Tensor, cond_tokens: torch.Tensor, region: torch.Tensor, masked: torch.Tensor, mask_id: int
) -> torch.Tensor:
    """The COMMIT input: z~ where masked and in R, [MASK] where masked outside R, z elsewhere.

    target, cond_tokens, masked: (B, t, h, w); region: (t, h, w) or (B, t, h, w).
    """
    region = region.expand_as(target)
    fill = torch.where(region, cond_tokens, torch.full_like(target, mask_id))
    return torch.where(masked, fill, target)


def commit_mask(
    target: torch.Tensor,
    cond_tokens: torch.Tensor,
    region: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
    ratio: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Training inputs and the three loss weights. ratio (B,) fixes r; default r ~ U[0, 1)."""
    b = target.shape[0]
    n = target[0].numel()
    r = torch.rand(b, generator=generator) if ratio is None else ratio  # (B,)
    k = torch.tensor([max(1, masked_count(float(x), n, cosine_schedule)) for x in r])  # (B,)
    scores = torch.rand(b, n, generator=generator)  # s_i
    masked = (scores.argsort(1).argsort(1) < k[:, None]).view_as(target)  # (B, t, h, w)
    reg = region.expand_as(target)
    return {
        "inputs": commit_inputs(target, cond_tokens, region, masked, mask_id),
        "masked": masked,
        "refine": masked & reg,  # predict z where a condition token was shown
        "predict": masked & ~reg,  # predict z where [MASK] was shown
        "reconstruct": ~masked,  # predict z where z itself was shown
    }


def commit_decode(
    logits_fn,
    cond_tokens: torch.Tensor,
    region: torch.Tensor,
    mask_id: int,
    steps: int = 12,
    generator: torch.Generator | None = None,
    **kwargs,
) -> torch.Tensor:
    """COMMIT decoding: all positions unknown; unknown positions show z~ in R and [MASK] outside.

    logits_fn(tokens (B, N), step) -> (B, N, K) on the flattened grid. Returns (B, t, h, w).
    """
    b = cond_tokens.shape[0]
    flat_cond = cond_tokens.reshape(b, -1)
    fill = torch.where(region.expand_as(cond_tokens).reshape(b, -1), flat_cond, torch.full_like(flat_cond, mask_id))
    unknown = torch.ones_like(flat_cond, dtype=torch.bool)
    out = decode(logits_fn, fill.clone(), unknown, mask_id, steps, generator, fill=fill, **kwargs)
    return out.view_as(cond_tokens)
