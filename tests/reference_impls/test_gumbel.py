"""Properties of reference_impls.gumbel: the Gumbel-Softmax sample, its straight-through variant and
the annealing schedule (Jang et al. 2017)."""

import math
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F

from reference_impls.gumbel import anneal_temperature, gumbel_from_uniform, gumbel_softmax, sample_gumbel


def test_soft_samples_lie_on_the_simplex():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    y = gumbel_softmax(logits, tau=0.7, generator=torch.Generator().manual_seed(1))
    assert (y >= 0).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(64))
    assert (y.max(-1).values < 1).any()  # relaxed, not already one-hot


def test_samples_approach_one_hot_as_temperature_falls():
    logits = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    mean_max = []
    for tau in [5.0, 1.0, 0.3, 0.05, 0.01]:
        y = gumbel_softmax(logits, tau, generator=torch.Generator().manual_seed(1))  # same noise each time
        mean_max.append(y.max(-1).values.mean().item())
    assert all(a < b for a, b in pairwise(mean_max))
    assert mean_max[0] < 0.4 and mean_max[-1] > 0.99


def test_low_temperature_sample_is_the_gumbel_max_sample():
    logits = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    y = gumbel_softmax(logits, tau=1e-3, generator=torch.Generator().manual_seed(3))
    g = sample_gumbel(logits.shape, torch.Generator().manual_seed(3))  # the same noise
    assert torch.equal(y.argmax(-1), (logits + g).argmax(-1))


def test_hard_sample_is_one_hot_forward_with_soft_gradient_backward():
    logits = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(16, 5, generator=torch.Generator().manual_seed(2))
    lh = logits.clone().requires_grad_()
    hard = gumbel_softmax(lh, 0.5, hard=True, generator=torch.Generator().manual_seed(1))
    ls = logits.clone().requires_grad_()
    soft = gumbel_softmax(ls, 0.5, hard=False, generator=torch.Generator().manual_seed(1))
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(hard.sum(-1), torch.ones(16))
    assert torch.equal(hard.argmax(-1), soft.argmax(-1))
    (hard * weights).sum().backward()
    (soft * weights).sum().backward()
    torch.testing.assert_close(lh.grad, ls.grad)
    assert lh.grad.abs().sum() > 0


def test_hard_sample_frequencies_match_softmax_of_logits():
    # Gumbel-Max: P(argmax = i) = softmax(logits)_i. With n = 40000 draws the standard error of each
    # frequency is at most 0.0025, so 0.015 is a tolerance of about six standard errors.
    n = 40000
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5])
    samples = gumbel_softmax(logits.expand(n, 5), tau=1.0, hard=True, generator=torch.Generator().manual_seed(0))
    freq = samples.mean(0)
    assert (freq - F.softmax(logits, -1)).abs().max() < 0.015


def test_annealing_schedule_is_exponential_floored_and_stepwise():
    assert anneal_temperature(0, rate=1e-4) == 1.0
    assert anneal_temperature(1000, rate=1e-4, every=500) == pytest.approx(math.exp(-0.1))
    assert anneal_temperature(1499, rate=1e-4, every=500) == anneal_temperature(1000, rate=1e-4, every=500)
    assert anneal_temperature(10**6, rate=1e-4) == 0.5  # floor tau_min
    taus = [anneal_temperature(t, rate=1e-4, every=500) for t in range(0, 20000, 250)]
    assert all(a >= b for a, b in pairwise(taus))


def test_gumbel_noise_stays_finite_at_both_ends_of_the_uniform_and_is_the_inverse_cdf_inside():
    u = torch.tensor([0.0, 1e-30, 0.3, 0.5, 1.0 - 1e-8, 1.0], dtype=torch.float64)
    g = gumbel_from_uniform(u)
    assert torch.isfinite(g).all()
    assert g[0] == g[1] == -math.log(-math.log(1e-20))  # clamped at eps
    assert g[4] == g[5] == -math.log(-math.log(1.0 - 1e-7))  # clamped just below 1
    torch.testing.assert_close(g[2:4], -(-u[2:4].log()).log())  # F^{-1}(u) of the standard Gumbel
    assert math.isclose(
        float(gumbel_from_uniform(torch.tensor(1e-10), eps=1e-5)), -math.log(-math.log(1e-5)), rel_tol=1e-6
    )


def test_noise_has_the_logits_dtype_and_the_sample_is_softmax_of_logits_plus_that_noise():
    logits = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = sample_gumbel(logits.shape, torch.Generator().manual_seed(4), torch.float64)
    assert g.dtype == torch.float64
    y = gumbel_softmax(logits, 0.5, generator=torch.Generator().manual_seed(4))
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, ((logits + g) / 0.5).softmax(-1), rtol=0, atol=1e-15)


def test_relaxed_sample_is_normalised_along_the_requested_dim():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))  # classes along dim 0
    y = gumbel_softmax(logits, 1.0, generator=torch.Generator().manual_seed(1), dim=0)
    torch.testing.assert_close(y.sum(0), torch.ones(3))
    assert not torch.allclose(y.sum(1), torch.ones(5))


def test_annealing_changes_tau_every_step_by_default():
    assert anneal_temperature(3, 0.1) == math.exp(-0.3)  # every = 1: no rounding of the step
    assert anneal_temperature(3, 0.1, every=2) == math.exp(-0.2)
    assert anneal_temperature(100, 0.1) == 0.5  # floored at tau_min


def test_sample_gumbel_passes_its_clamp_on_to_the_transform():
    g = sample_gumbel((1000,), torch.Generator().manual_seed(0), torch.float64, eps=0.5)
    assert float(g.min()) == -math.log(-math.log(0.5))  # every u below 0.5 is clamped up to it
