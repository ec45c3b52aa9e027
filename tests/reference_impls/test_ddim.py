"""Tests for reference_impls/ddim.py (DDIM, papers/song2021denoising.md)."""

import os

import pytest
import torch

from reference_impls.ddim import (
    ddim_invert,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    exact_eps_oracle,
    gaussian_eps_oracle,
    make_timesteps,
    step_pairs,
)
from reference_impls.ddpm import Schedule, cosine_betas, linear_betas, q_posterior

SPACINGS = ["leading", "trailing", "linspace"]


@pytest.fixture  # function scope: every test builds its own Schedule, so mutation testing maps Schedule to each test
def sched():
    return Schedule(linear_betas(1000))


def test_eta_zero_is_deterministic_and_eta_one_is_not(sched):
    g = torch.Generator().manual_seed(0)
    oracle = gaussian_eps_oracle(sched, torch.tensor([0.3, -0.7]), 0.5)
    x_T = torch.randn(8, 2, generator=g)
    ts = make_timesteps(1000, 20, "trailing")
    a = ddim_sample(sched, oracle, x_T, ts, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(sched, oracle, x_T, ts, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddim_sample(sched, oracle, x_T, ts, eta=1.0, generator=torch.Generator().manual_seed(1))
    d = ddim_sample(sched, oracle, x_T, ts, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert (c - d).abs().max() > 1e-2


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_sampler_with_exact_eps_oracle_returns_x0(sched, spacing, eta):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 3, 4, generator=g)
    x_T = torch.randn(5, 3, 4, generator=g)
    for n in (7, 50):
        out = ddim_sample(sched, exact_eps_oracle(sched, x0), x_T, make_timesteps(1000, n, spacing), eta, g)
        assert torch.allclose(out, x0, atol=1e-4)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_each_step_lands_on_the_marginal_of_the_next_listed_timestep(sched, spacing):
    # With the exact oracle and eta = 0 the trajectory is x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps for ONE
    # fixed eps. The oracle, called at (x, t), recovers that eps only if x really sits at timestep t,
    # i.e. only if the previous step targeted the timestep the sampler calls next.
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    x_T = torch.randn(4, 6, generator=g, dtype=torch.float64)
    oracle = exact_eps_oracle(sched, x0)
    for n in (7, 13, 50):  # 7 and 13 do not divide 1000: diffusers' t - T // S gets these wrong
        ts = make_timesteps(1000, n, spacing)
        seen_t, seen_eps = [], []

        def recording(x, t, seen_t=seen_t, seen_eps=seen_eps):
            eps = oracle(x, t)
            seen_t.append(int(t[0]))
            seen_eps.append(eps)
            return eps

        ddim_sample(sched, recording, x_T, ts)
        assert seen_t == ts
        for eps in seen_eps[1:]:
            assert torch.allclose(eps, seen_eps[0], atol=1e-9)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_previous_timestep_is_the_next_list_entry(spacing):
    for n in (1, 7, 10, 13, 50, 100):
        ts = make_timesteps(1000, n, spacing)
        pairs = step_pairs(ts)
        assert [t for t, _ in pairs] == ts
        assert [p for _, p in pairs] == ts[1:] + [-1]
        assert all(p < t for t, p in pairs)


@pytest.fixture(scope="module")
def diffusers_ddim():
    os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    return DDIMScheduler


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timestep_lists_equal_diffusers_ddim_scheduler(diffusers_ddim, spacing):
    ref = diffusers_ddim(num_train_timesteps=1000, timestep_spacing=spacing)
    for n in list(range(1, 60)) + [100, 250, 500, 1000]:
        ref.set_timesteps(n)
        assert make_timesteps(1000, n, spacing) == ref.timesteps.tolist(), n


def test_inversion_then_sampling_round_trips(sched):
    g = torch.Generator().manual_seed(5)
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    oracle = gaussian_eps_oracle(sched, mean, 0.5)
    x0 = mean + 0.5 * torch.randn(16, 3, generator=g, dtype=torch.float64)
    errors = []
    for n in (20, 100, 500):
        ts = make_timesteps(1000, n, "trailing")
        x_T = ddim_invert(sched, oracle, x0, ts)
        assert torch.equal(x_T, ddim_invert(sched, oracle, x0, ts))  # deterministic encoder
        errors.append((ddim_sample(sched, oracle, x_T, ts) - x0).abs().max().item())
    assert errors[0] > errors[1] > errors[2]  # the ODE discretisation error shrinks with the step
    assert errors[2] < 0.03
    # the code is a Gaussian-looking latent, not the data: its spread is about 1, the data's 0.5
    assert 0.8 < x_T.std().item() < 1.3


@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)], ids=["linear", "cosine"])
def test_sigma_at_eta_one_is_the_ddpm_posterior_variance_at_every_step(betas):
    s = Schedule(betas)
    sigma2 = torch.tensor([ddim_sigma(s, t, t - 1, 1.0) ** 2 for t in range(1000)], dtype=torch.float64)
    torch.testing.assert_close(sigma2, s.posterior_variance, rtol=1e-9, atol=1e-15)
    half = torch.tensor([ddim_sigma(s, t, t - 1, 0.5) for t in range(1000)], dtype=torch.float64)
    torch.testing.assert_close(half, 0.5 * sigma2.sqrt(), rtol=1e-12, atol=0)  # sigma is linear in eta


def test_full_step_at_eta_one_is_a_draw_from_the_ddpm_posterior_with_x0_hat(sched):
    # Song et al., Sec. 4.1: with eta = 1 on the full step list the generative step IS DDPM's
    # q(x_{t-1} | x_t, x0_hat): same mean (Eq. 7) and same variance beta~_t, for the same noise z.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for t in (1, 10, 500, 999):
        tt = torch.full((3,), t)
        x0_hat = (x - (1 - sched.alpha_bars[t]).sqrt() * eps) / sched.alpha_bars[t].sqrt()
        mean, var = q_posterior(sched, x0_hat, x, tt)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(t), dtype=x.dtype)
        got = ddim_step(sched, x, eps, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(got, mean + var.sqrt() * z, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("n", [10, 50])
def test_every_step_equals_diffusers_ddim_scheduler_step_with_the_same_noise(diffusers_ddim, eta, n):
    ref = diffusers_ddim(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")
    ref.set_timesteps(n)  # leading spacing with n | T: diffusers' t - T // n is the next list entry
    ts = make_timesteps(1000, n, "leading")
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 4, generator=g)
    for t, t_prev in step_pairs(ts):
        eps = torch.randn(2, 4, generator=g)
        z = torch.randn(2, 4, generator=torch.Generator().manual_seed(t))
        want = ref.step(eps, t, x, eta=eta, variance_noise=z).prev_sample
        got = ddim_step(Schedule(linear_betas(1000)), x, eps, t, t_prev, eta, torch.Generator().manual_seed(t))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        x = want


def test_the_default_step_is_deterministic_and_draws_no_noise(sched):
    # eta defaults to 0 (DDIM proper): no sigma, so the generator is never touched
    x, eps = torch.randn(2, 3, generator=torch.Generator().manual_seed(0)), torch.randn(2, 3)
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    a = ddim_step(sched, x, eps, 500, 480, generator=g)
    assert torch.equal(g.get_state(), state)
    assert torch.equal(a, ddim_step(sched, x, eps, 500, 480, generator=torch.Generator().manual_seed(2)))


def test_unknown_spacing_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown spacing 'bogus'"):
        make_timesteps(1000, 10, "bogus")


def test_gaussian_oracle_is_the_mmse_noise_estimate_and_keeps_the_input_dtype(sched):
    # For x_0 ~ N(mean, std^2) the MMSE estimate E[eps | x_t] leaves a residual uncorrelated with x_t.
    g = torch.Generator().manual_seed(11)
    mean, std, n = torch.tensor([0.7]), 0.5, 200_000
    oracle = gaussian_eps_oracle(sched, mean, std)
    for t in (100, 400, 800):
        x0 = mean + std * torch.randn(n, 1, generator=g)
        eps = torch.randn(n, 1, generator=g)
        a = sched.alpha_bars[t].float()
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        out = oracle(xt, torch.full((n,), t))
        assert out.dtype == torch.float32
        resid = (eps - out)[:, 0]
        xc = xt[:, 0] - xt[:, 0].mean()
        assert abs(float((resid * xc).mean())) < 0.01 and abs(float(resid.mean())) < 0.01


def test_default_spacing_is_leading_as_in_diffusers():
    assert make_timesteps(1000, 10) == make_timesteps(1000, 10, "leading") == list(range(900, -1, -100))
