"""Pitfall: which guidance scale means "no guidance" (papers/ho2022classifier.md, papers/chang2023muse.md,
papers/nichol2022glide.md, papers/saharia2022photorealistic.md).

Ho & Salimans write (1 + w) c - w u, so w = 0 is plain conditional sampling; Muse's logit guidance
uses the same w-form with its scale t. GLIDE's released sampler (openai/glide-text2im
notebooks/text2im.ipynb) writes u + s (c - u), so s = 1 is plain conditional sampling and s = 0 is
unconditional; diffusers' pipelines use this s-form too. Our guidance.py has both and converts
with s = 1 + w.
"""

from __future__ import annotations

import torch

from reference_impls.guidance import guide_s, guide_w
from reference_impls.muse import guided_logits

g = torch.Generator().manual_seed(1)
COND = torch.randn(3, 7, generator=g)
UNCOND = torch.randn(3, 7, generator=g)


def test_no_guidance_is_w_zero_in_the_w_form_and_s_one_in_the_s_form():
    torch.testing.assert_close(guide_w(COND, UNCOND, 0.0), COND)
    torch.testing.assert_close(guide_s(COND, UNCOND, 1.0), COND)


def test_the_same_number_means_different_strengths_in_the_two_conventions():
    torch.testing.assert_close(guide_w(COND, UNCOND, 3.0), guide_s(COND, UNCOND, 4.0))
    assert not torch.allclose(guide_w(COND, UNCOND, 3.0), guide_s(COND, UNCOND, 3.0))
    torch.testing.assert_close(guide_s(COND, UNCOND, 0.0), UNCOND)  # s = 0 is unconditional, w = 0 is not


def test_muse_scale_zero_is_the_conditional_logits():
    def model_fn(tokens, text):
        return COND if text is not None else UNCOND

    torch.testing.assert_close(guided_logits(model_fn, None, torch.ones(1), 0.0), COND)
    torch.testing.assert_close(guided_logits(model_fn, None, torch.ones(1), 2.0), guide_s(COND, UNCOND, 3.0))
