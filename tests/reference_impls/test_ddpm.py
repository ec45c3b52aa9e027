"""Tests for reference_impls/ddpm.py (DDPM, papers/ho2020denoising.md)."""

import math
import os

import pytest
import torch
from torch import nn

from reference_impls.ddpm import (
    Schedule,
    cosine_betas,
    eps_loss,
    linear_betas,
    p_mean,
    p_sample_loop,
    predict_x0,
    q_posterior,
    q_sample,
)


@pytest.fixture  # function scope: every test builds its own Schedule, so mutation testing maps Schedule to each test
def sched():
    return Schedule(linear_betas(1000))


def test_linear_schedule_matches_the_paper_constants(sched):
    assert sched.num_steps == 1000
    assert math.isclose(float(sched.betas[0]), 1e-4) and math.isclose(float(sched.betas[-1]), 0.02)
    assert torch.allclose(
        sched.betas[1:] - sched.betas[:-1], torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64)
    )


@pytest.mark.parametrize("betas", [linear_betas(1000), cosine_betas(1000)])
def test_alpha_bar_at_T_is_near_zero_and_decreasing(betas):
    s = Schedule(betas)
    assert float(s.alpha_bars[-1]) < 1e-4  # x_T is almost pure noise
    assert float(s.alpha_bars[0]) > 0.99
    assert torch.all(s.alpha_bars[1:] < s.alpha_bars[:-1])


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_q_sample_matches_closed_form_moments(sched, t):
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64).expand(n, 2)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    xt = q_sample(sched, x0, torch.full((n,), t), noise)
    a = float(sched.alpha_bars[t])
    # standard errors are sqrt(var / n) ~ 2e-3: allow 5 of them
    assert torch.allclose(xt.mean(0), math.sqrt(a) * x0[0], atol=0.012)
    assert torch.allclose(xt.var(0), torch.full((2,), 1 - a, dtype=torch.float64), atol=0.012)


@pytest.mark.parametrize("t", [1, 10, 300, 999])
def test_posterior_matches_brute_force_gaussian_bayes(sched, t):
    # q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0): multiply the two
    # densities on a fine grid and read off the normalised mean and variance.
    x0, xt = 0.8, -0.3
    a_prev, alpha, beta = float(sched.alpha_bars[t - 1]), float(sched.alphas[t]), float(sched.betas[t])
    mean_guess = math.sqrt(a_prev) * x0
    half = 12 * math.sqrt(min(1 - a_prev, beta / alpha)) + 1e-3
    grid = (
        torch.linspace(-3.0, 3.0, 400_001, dtype=torch.float64)
        if half > 3
        else torch.linspace(mean_guess - 3.0, mean_guess + 3.0, 400_001, dtype=torch.float64)
    )
    log_w = -((xt - math.sqrt(alpha) * grid) ** 2) / (2 * beta) - (grid - math.sqrt(a_prev) * x0) ** 2 / (
        2 * (1 - a_prev)
    )
    w = torch.exp(log_w - log_w.max())
    w = w / w.sum()
    bf_mean = float((w * grid).sum())
    bf_var = float((w * (grid - bf_mean) ** 2).sum())
    mean, var = q_posterior(
        sched, torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t])
    )
    assert math.isclose(float(mean), bf_mean, rel_tol=1e-5, abs_tol=1e-7)
    assert math.isclose(float(var), bf_var, rel_tol=1e-3)


def test_p_mean_with_the_true_noise_equals_the_posterior_mean(sched):
    # Eq. 11 with eps_theta = the noise actually added must give mu~_t(x_t, x_0) exactly; a wrong
    # coefficient in the sampler (e.g. sqrt(1 - alpha_bar) in place of 1 - alpha) breaks this.
    g = torch.Generator().manual_seed(1)
    t = torch.arange(1000)
    x0 = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(1000, 3, generator=g, dtype=torch.float64)
    xt = q_sample(sched, x0, t, noise)
    mean, _ = q_posterior(sched, x0, xt, t)
    assert torch.allclose(p_mean(sched, xt, t, noise), mean, atol=1e-9)
    assert torch.allclose(predict_x0(sched, xt, t, noise), x0, atol=1e-9)


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_ancestral_sampler_with_exact_eps_oracle_returns_x0(variance):
    s = Schedule(linear_betas(200))
    x0 = torch.tensor([[0.4, -1.2, 2.0]]).expand(6, 3)

    def oracle(x, t):
        a = s.alpha_bars[t].float().view(-1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    out = p_sample_loop(s, oracle, (6, 3), torch.Generator().manual_seed(2), variance)
    assert torch.allclose(out, x0, atol=1e-4)


@pytest.fixture(scope="module")
def diffusers_ddpm():
    os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    return DDPMScheduler


@pytest.mark.parametrize("name", ["linear", "squaredcos_cap_v2"])
def test_schedules_equal_diffusers_ddpm_scheduler(diffusers_ddpm, name):
    ref = diffusers_ddpm(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=name)
    ours = Schedule(linear_betas(1000) if name == "linear" else cosine_betas(1000))
    assert torch.allclose(ours.betas, ref.betas.double(), atol=1e-6, rtol=0)
    assert torch.allclose(ours.alpha_bars, ref.alphas_cumprod.double(), atol=1e-6, rtol=0)


class _TinyEps(nn.Module):
    def __init__(self, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        self.net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))

    def forward(self, x, t):  # x (B, 2), t (B,)
        return self.net(torch.cat([x, (t.float() / self.num_steps)[:, None]], dim=1))


def test_seeded_tiny_training_run_lowers_the_eps_loss():
    torch.manual_seed(0)
    s = Schedule(linear_betas(100, 1e-4 * 10, 0.02 * 10))  # fewer, larger steps: same shape, faster
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    data = centres[torch.randint(0, 3, (4096,), generator=g)] + 0.1 * torch.randn(4096, 2, generator=g)
    model = _TinyEps(s.num_steps)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def held_out_loss():
        with torch.no_grad():
            return float(eps_loss(s, model, data[:1024], torch.Generator().manual_seed(123)))

    before = held_out_loss()
    for _ in range(300):
        idx = torch.randint(0, 4096, (256,), generator=g)
        loss = eps_loss(s, model, data[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < 0.6 * before


@pytest.mark.parametrize("s", [0.008, 0.02])
def test_cosine_schedule_alpha_bar_is_the_closed_form_with_offset_s(s):
    # Nichol & Dhariwal, Eq. 17: alpha_bar_t = f(t) / f(0), f(t) = cos^2((t / T + s) / (1 + s) pi / 2).
    # The offset s keeps beta_1 away from 0; with s = 0 the first beta would be ~2.5e-6 instead.
    T = 1000

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    alpha_bars = Schedule(cosine_betas(T, s=s)).alpha_bars
    unclipped = [t for t in range(T) if 1 - f(t + 1) / f(t) < 0.999]  # only the last steps hit the 0.999 cap
    assert len(unclipped) >= T - 2
    want = torch.tensor([f(t + 1) / f(0) for t in unclipped], dtype=torch.float64)
    torch.testing.assert_close(alpha_bars[unclipped], want, rtol=1e-9, atol=1e-12)
    assert math.isclose(float(cosine_betas(T, s=s)[0]), 1 - f(1) / f(0), rel_tol=1e-12)
    assert float(cosine_betas(T, s=s)[-1]) == 0.999  # the cap of the paper's clipping


def test_default_schedules_have_the_papers_thousand_steps_and_float64_rates():
    assert len(linear_betas()) == 1000 and len(cosine_betas()) == 1000  # T = 1000, papers/ho2020denoising.md
    s = Schedule(linear_betas(50).float())  # float32 betas in, float64 schedule out
    assert s.betas.dtype == s.alpha_bars.dtype == s.posterior_variance.dtype == torch.float64


def test_posterior_and_x0_at_random_steps_match_bayes_and_the_inverse_of_eq_4(sched):
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (64,), generator=g)
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(64, 2, generator=g, dtype=torch.float64)
    xt = q_sample(sched, x0, t, noise)
    ab, b = sched.alpha_bars[t][:, None], sched.betas[t][:, None]
    ab_prev = torch.where(t > 0, sched.alpha_bars[(t - 1).clamp(min=0)], torch.ones(64, dtype=torch.float64))[:, None]
    mean, var = q_posterior(sched, x0, xt, t)
    want = ab_prev.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - ab_prev) / (1 - ab) * xt  # Eq. 7
    torch.testing.assert_close(mean, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, (1 - ab_prev) / (1 - ab) * b, rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(predict_x0(sched, xt, t, noise), x0, rtol=1e-8, atol=1e-8)


def test_eps_loss_is_mse_of_the_noise_at_a_uniform_step_drawn_from_its_generator():
    s = Schedule(linear_betas(2))  # T = 2: both steps, including the first (index 0), must be drawn
    seen = []

    def model(x, t):
        seen.append(t)
        return x * 0.5

    x0 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = eps_loss(s, model, x0, torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global generator must not matter
    assert torch.equal(loss, eps_loss(s, model, x0, torch.Generator().manual_seed(1)))
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 2, (64,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(loss, ((q_sample(s, x0, t, noise) * 0.5 - noise) ** 2).mean(), rtol=0, atol=0)
    assert set(seen[0].tolist()) == {0, 1}
