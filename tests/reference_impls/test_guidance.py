"""Tests for reference_impls/guidance.py (classifier-free guidance, papers/ho2022classifier.md)."""

import math

import pytest
import torch

from reference_impls.guidance import drop_condition, guide_s, guide_w


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)


def test_w_zero_gives_the_conditional_prediction():
    cond, uncond = _pair()
    assert torch.equal(guide_w(cond, uncond, 0.0), cond)
    assert torch.allclose(guide_s(cond, uncond, 1.0), cond, atol=1e-6)
    assert torch.equal(guide_s(cond, uncond, 0.0), uncond)  # s = 0 (w = -1) is the unconditional model


@pytest.mark.parametrize("w", [-0.5, 0.3, 1.0, 3.0, 7.5])
def test_w_form_and_s_form_agree_when_s_is_one_plus_w(w):
    cond, uncond = _pair(1)
    assert torch.allclose(guide_w(cond, uncond, w), guide_s(cond, uncond, 1.0 + w), atol=1e-5)
    # and both equal Eq. 6 written out by hand
    assert torch.allclose(guide_w(cond, uncond, w), (1 + w) * cond - w * uncond, atol=1e-5)


def test_guidance_extrapolates_along_the_conditional_minus_unconditional_direction():
    cond, uncond = _pair(2)
    d = cond - uncond
    for w in (0.5, 2.0):
        step = guide_w(cond, uncond, w) - cond
        assert torch.allclose(step, w * d, atol=1e-5)  # moves past cond, away from uncond


def test_guided_eps_is_the_score_of_the_sharpened_implicit_classifier():
    # For Gaussians p(x | c) = N(m_c, 1) and p(x) = N(m_0, 1), eps = -sigma * score; guidance then
    # gives the eps of p(x | c) p(c | x)^w, whose log-density gradient is (1 + w) s_c - w s_0.
    x = torch.linspace(-2, 2, 9)
    m_c, m_0, sigma, w = 1.0, -0.5, 0.7, 2.0
    eps_c, eps_0 = sigma * (x - m_c), sigma * (x - m_0)
    score_sharpened = -(x - m_c) + w * (-(x - m_c) + (x - m_0))
    assert torch.allclose(guide_w(eps_c, eps_0, w), -sigma * score_sharpened, atol=1e-6)


@pytest.mark.parametrize("p_uncond", [0.1, 0.2, 0.5])
def test_empirical_drop_rate_matches_p_uncond(p_uncond):
    n = 100_000
    cond = torch.arange(1, n + 1, dtype=torch.float32)[:, None].expand(n, 4)
    null = torch.zeros(4)
    out, dropped = drop_condition(cond, null, p_uncond, torch.Generator().manual_seed(3))
    rate = dropped.float().mean().item()
    assert abs(rate - p_uncond) < 5 * math.sqrt(p_uncond * (1 - p_uncond) / n)
    # exactly the dropped rows carry the null condition; the others are untouched
    assert torch.equal(out[dropped], null.expand(int(dropped.sum()), 4))
    assert torch.equal(out[~dropped], cond[~dropped])


def test_drop_condition_is_reproducible_from_the_generator():
    cond = torch.randn(64, 5)
    a = drop_condition(cond, torch.zeros(5), 0.3, torch.Generator().manual_seed(7))[1]
    b = drop_condition(cond, torch.zeros(5), 0.3, torch.Generator().manual_seed(7))[1]
    assert torch.equal(a, b)
