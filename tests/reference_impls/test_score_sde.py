import math

import pytest
import torch

from reference_impls.ddpm import Schedule, linear_betas
from reference_impls.score_sde import (
    VESDE,
    VPSDE,
    dsm_loss,
    euler_maruyama_sample,
    gaussian_data_score,
    probability_flow_sample,
    reverse_sde,
)

MU, STD = 1.5, 0.5  # the data: N(1.5, 0.5^2)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _chain_marginals(sde):
    """Mean coefficient and variance of x_i given x_0 after each step of the discretised forward chain."""
    f, G = sde.discretize_step(torch.ones(sde.N, 1, dtype=torch.float64), torch.arange(sde.N))
    a = (1 + f[:, 0]).tolist()  # x_{i+1} = a_i x_i + G_i z for the linear drift f_i = (a_i - 1) x_i
    m, v, ms, vs = 1.0, 0.0, [], []
    for a_i, g_i in zip(a, G.tolist(), strict=True):
        m, v = a_i * m, a_i * a_i * v + g_i**2
        ms.append(m)
        vs.append(v)
    return torch.tensor(ms, dtype=torch.float64), torch.tensor(vs, dtype=torch.float64)


def test_vp_sde_discretisation_recovers_ddpm_linear_schedule_and_marginals():
    sde = VPSDE(beta_min=0.1, beta_max=20.0, N=1000)
    ddpm = Schedule(linear_betas(1000, 1e-4, 0.02))
    torch.testing.assert_close(sde.discrete_betas, ddpm.betas, rtol=0, atol=1e-15)  # beta_min / N = 1e-4, ...
    m, v = _chain_marginals(sde)
    torch.testing.assert_close(m**2, ddpm.alpha_bars, rtol=1e-12, atol=0)  # q(x_t | x_0) of DDPM Eq. 4
    torch.testing.assert_close(v, 1 - ddpm.alpha_bars, rtol=1e-12, atol=1e-15)
    # the continuous marginal at t_i = (i + 1) / N matches the chain to O(1 / N)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    mean, std = sde.marginal_prob(torch.ones(1000, 1, dtype=torch.float64), t)
    assert (mean[:, 0] ** 2 - ddpm.alpha_bars).abs().max() < 2e-3
    assert (std**2 - (1 - ddpm.alpha_bars)).abs().max() < 2e-3
    assert abs(float(std[-1]) - 1) < 1e-4  # p_1 is N(0, I) up to exp(-B(1)) = 4.3e-5 of variance


def test_vp_marginal_prob_solves_the_forward_sde_moment_equations():
    # For dx = -1/2 beta x dt + sqrt(beta) dw: d m / dt = -1/2 beta m and d var / dt = -beta var + beta.
    sde = VPSDE()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    m = lambda s: sde.marginal_prob(torch.ones(len(s), 1, dtype=torch.float64), s)[0][:, 0]  # noqa: E731
    var = lambda s: sde.marginal_prob(torch.ones(len(s), 1, dtype=torch.float64), s)[1] ** 2  # noqa: E731
    dm, dv = (m(t + h) - m(t - h)) / (2 * h), (var(t + h) - var(t - h)) / (2 * h)
    torch.testing.assert_close(dm, -0.5 * sde.beta(t) * m(t), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dv, sde.beta(t) * (1 - var(t)), rtol=1e-6, atol=1e-9)


def test_ve_sde_chain_reaches_the_smld_noise_scales_and_g_squared_is_the_derivative_of_sigma_squared():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0, N=1000)
    m, v = _chain_marginals(sde)
    assert torch.equal(m, torch.ones_like(m))
    torch.testing.assert_close(v, sde.discrete_sigmas**2, rtol=1e-10, atol=0)  # the cumulative variance is sigma_i^2
    # int_0^t g^2 = sigma(t)^2 - sigma_min^2: the exact marginal variance, which marginal_prob rounds to sigma(t)^2
    s = torch.linspace(0, 0.7, 200001, dtype=torch.float64)
    g2 = sde.sde(torch.zeros(len(s), 1, dtype=torch.float64), s)[1] ** 2
    integral = torch.trapezoid(g2, s)
    exact = sde.sigma(torch.tensor(0.7, dtype=torch.float64)) ** 2 - 0.01**2
    torch.testing.assert_close(integral, exact, rtol=1e-8, atol=0)
    assert float(sde.marginal_prob(torch.zeros(1, 1), torch.tensor([0.0]))[1]) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("sde", "method", "tol"),
    [(VPSDE(), "heun", 5e-5), (VPSDE(), "euler", 5e-3), (VESDE(), "heun", 2e-4)],  # errors seen: 6e-6, 1.2e-3, 7e-5
    ids=["vp-heun", "vp-euler", "ve-heun"],
)
def test_probability_flow_ode_with_the_exact_score_maps_p_T_onto_the_data_gaussian(sde, method, tol):
    # Start from the exact quantiles of p_T; the ODE must carry them to the quantiles of p_eps, which for
    # Gaussian data is the affine map of the standardised variable: no sampling noise in this check.
    score = gaussian_data_score(sde, MU, STD)
    u = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]  # (61, 1) standard-normal quantiles
    eps = 1e-3

    def marginal(t):
        m, s = sde.marginal_prob(torch.ones(1, 1, dtype=torch.float64), torch.tensor([t], dtype=torch.float64))
        return float(m) * MU, math.sqrt(float(m) ** 2 * STD**2 + float(s) ** 2)

    (m_T, s_T), (m_e, s_e) = marginal(1.0), marginal(eps)
    x0 = probability_flow_sample(sde, score, m_T + s_T * u, n_steps=1000, eps=eps, method=method)
    target = m_e + s_e * u
    assert (x0 - target).abs().max() < tol
    assert abs(m_e - MU) < 1e-3 and abs(s_e - STD) < 1e-3  # p_eps is the data Gaussian to this tolerance


def test_probability_flow_ode_with_the_wrong_weight_on_the_score_misses_the_data():
    # The ODE's score term is 1/2 g^2: with the reverse SDE's full g^2 (and no noise) the spread collapses.
    sde = VPSDE()
    score = gaussian_data_score(sde, MU, STD)
    u = torch.linspace(-2, 2, 21, dtype=torch.float64)[:, None]
    doubled = lambda x, t: 2 * score(x, t)  # noqa: E731
    good = probability_flow_sample(sde, score, u, n_steps=500)
    bad = probability_flow_sample(sde, doubled, u, n_steps=500)
    assert abs(float(good.std()) / float(u.std()) - STD) < 1e-2
    assert float(bad.std()) / float(u.std()) < 0.5 * STD


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_reverse_sde_euler_maruyama_with_the_exact_score_samples_the_data_gaussian(sde):
    score = gaussian_data_score(sde, MU, STD)
    g = _g(1)
    x = sde.prior_sampling((4000, 1), generator=g)
    if isinstance(sde, VESDE):
        x = x + MU  # p_T = N(mu, sigma_max^2 + std^2): shift the prior's mean (invisible at sigma_max = 50)
    out = euler_maruyama_sample(sde, score, x, generator=g)
    # standard errors: 0.5 / sqrt(4000) = 0.008 on the mean, 0.006 on the std
    assert abs(float(out.mean()) - MU) < 0.04
    assert abs(float(out.std()) - STD) < 0.03


def test_reverse_sde_drift_is_f_minus_g_squared_times_the_score():
    sde = VPSDE()
    x = torch.randn(5, 2, generator=_g(2), dtype=torch.float64)
    t = torch.rand(5, generator=_g(3), dtype=torch.float64)
    score = lambda x, t: -x * 3.0  # noqa: E731
    f, g = sde.sde(x, t)
    d_sde, g_sde = reverse_sde(sde, score, x, t)
    d_ode, g_ode = reverse_sde(sde, score, x, t, probability_flow=True)
    torch.testing.assert_close(d_sde, f + g[:, None] ** 2 * 3.0 * x)
    torch.testing.assert_close(d_ode, f + 0.5 * g[:, None] ** 2 * 3.0 * x)
    assert torch.equal(g_sde, g) and torch.equal(g_ode, torch.zeros_like(g))


def test_denoising_score_matching_is_smallest_at_the_exact_score():
    sde = VPSDE()
    x0 = MU + STD * torch.randn(20000, 1, generator=_g(4), dtype=torch.float64)
    score = gaussian_data_score(sde, MU, STD)
    losses = [dsm_loss(sde, lambda x, t, c=c: c * score(x, t), x0, generator=_g(5)) for c in (0.8, 1.0, 1.2)]
    assert losses[1] < losses[0] and losses[1] < losses[2]  # same draws (same seed) for the three scores
