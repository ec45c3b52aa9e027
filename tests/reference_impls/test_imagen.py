"""Tests for reference_impls/imagen.py (Imagen, papers/saharia2022photorealistic.md)."""

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.ddpm import Schedule, linear_betas, q_sample
from reference_impls.imagen import (
    augment_low_res,
    dynamic_threshold,
    guided_step,
    sr_conditioning,
    static_threshold,
)


def test_dynamic_thresholding_keeps_outputs_in_unit_range():
    g = torch.Generator().manual_seed(0)
    x = 6.0 * torch.randn(8, 3, 16, 16, generator=g)  # far outside [-1, 1], as under strong guidance
    for p in (0.5, 0.9, 0.995, 1.0):
        out = dynamic_threshold(x, p)
        assert out.abs().max() <= 1.0 + 1e-6


def test_dynamic_equals_static_clipping_when_the_percentile_is_at_most_one():
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.rand(4, 1000, generator=g) - 0.25  # mostly small values
    x[:, :3] = torch.tensor([3.0, -2.0, 1.7])  # three outliers: the 0.995-quantile of |x| stays <= 1
    assert torch.quantile(x.abs(), 0.995, dim=1).max() <= 1.0
    assert torch.equal(dynamic_threshold(x, 0.995), static_threshold(x))


def test_dynamic_threshold_matches_a_brute_force_percentile_and_rescale():
    g = torch.Generator().manual_seed(2)
    x = 3.0 * torch.randn(3, 2, 10, 10, generator=g, dtype=torch.float64)
    p = 0.9
    out = dynamic_threshold(x, p)
    for b in range(3):
        v = x[b].flatten().abs().sort().values
        pos = p * (v.numel() - 1)  # linear interpolation between order statistics
        lo = int(math.floor(pos))
        s = max(1.0, float(v[lo] + (pos - lo) * (v[lo + 1] - v[lo])))
        expected = x[b].clamp(-s, s) / s
        assert torch.allclose(out[b], expected, atol=1e-12)
    # the rescale preserves the sign and the order of the values that were not clipped
    inside = x.abs() < 1.0
    assert torch.all(torch.sign(out[inside]) == torch.sign(x[inside]))


def test_dynamic_thresholding_saturates_fewer_pixels_than_static_clipping():
    g = torch.Generator().manual_seed(3)
    x = 3.0 * torch.randn(4, 3, 32, 32, generator=g)
    sat_static = (static_threshold(x).abs() >= 1.0).float().mean()
    sat_dynamic = (dynamic_threshold(x, 0.995).abs() >= 1.0 - 1e-6).float().mean()
    assert sat_dynamic < 0.01 < sat_static


@pytest.mark.parametrize("threshold", ["static", "dynamic"])
def test_guided_step_with_huge_guidance_keeps_x0_and_final_sample_in_range(threshold):
    s = Schedule(linear_betas(50, 2e-3, 0.4))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 8, 8, generator=g)
    for t in reversed(range(s.num_steps)):
        eps_c = torch.randn(x.shape, generator=g)
        eps_u = torch.randn(x.shape, generator=g)
        x, x0_hat = guided_step(s, x, t, eps_c, eps_u, w=20.0, threshold=threshold, generator=g)
        assert x0_hat.abs().max() <= 1.0 + 1e-6
    # the last step returns the posterior mean with x0-coefficient 1 and x_t-coefficient 0
    assert x.abs().max() <= 1.0 + 1e-5


def test_guided_step_without_thresholding_is_the_ddpm_posterior_with_the_guided_noise():
    s = Schedule(linear_betas(1000))
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 4, generator=g, dtype=torch.float64)
    t = 400
    xt = q_sample(s, x0, torch.full((3,), t), noise)
    # cond = true noise, uncond = anything, w = 0: the step must recover x0 and the posterior mean
    _, x0_hat = guided_step(s, xt, t, noise, torch.zeros_like(noise), w=0.0, threshold="none", generator=g)
    assert torch.allclose(x0_hat, x0, atol=1e-9)


def test_noise_augmentation_level_zero_is_identity_and_level_sets_the_noise_variance():
    g = torch.Generator().manual_seed(6)
    z = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    assert torch.equal(augment_low_res(z, torch.zeros(2), g), z)
    levels = torch.tensor([0.1, 0.6])
    out = augment_low_res(z, levels, g)
    for b, lvl in enumerate(levels.tolist()):
        resid = out[b] - math.sqrt(1 - lvl) * z[b]
        assert abs(resid.var().item() - lvl) < 0.05 * lvl
        assert abs(resid.mean().item()) < 0.02


def test_sr_conditioning_upsamples_and_draws_one_level_per_example_in_training():
    g = torch.Generator().manual_seed(7)
    z = torch.rand(16, 3, 64, 64, generator=g)
    up, lvl = sr_conditioning(z, 256, generator=g, max_level=0.5)
    assert up.shape == (16, 3, 256, 256)
    assert lvl.unique().numel() == 16 and lvl.min() >= 0 and lvl.max() < 0.5
    # at sampling time a fixed level of zero gives back a plain bilinear upsampling
    up0, lvl0 = sr_conditioning(z, 256, aug_level=torch.zeros(16), generator=g)
    assert torch.equal(lvl0, torch.zeros(16))
    assert torch.allclose(up0, F.interpolate(z, size=(256, 256), mode="bilinear", align_corners=False))
    # and a non-zero level changes the conditioning image
    up1, _ = sr_conditioning(z, 256, aug_level=torch.full((16,), 0.3), generator=g)
    assert (up1 - up0).abs().mean() > 0.1
