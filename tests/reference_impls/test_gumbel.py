"""Properties of reference_impls.gumbel: the Gumbel-Softmax sample, its straight-through variant and
the annealing schedule (Jang et al. 2017)."""

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.gumbel import anneal_temperature, gumbel_softmax, sample_gumbel


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
    assert all(a < b for a, b in zip(mean_max, mean_max[1:]))
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
    assert all(a >= b for a, b in zip(taus, taus[1:]))
