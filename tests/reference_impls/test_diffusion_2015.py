import math

import torch
from numpy.polynomial.hermite_e import hermegauss
from torch.distributions import Normal

from reference_impls.ddpm import Schedule
from reference_impls.diffusion_2015 import (
    ReverseGaussian,
    bound,
    bound_loss,
    entropy_terms,
    first_step_nll,
    prior_kl,
    sample,
    sohl_dickstein_betas,
    step_kl,
)

T = 8
SCHED = Schedule(sohl_dickstein_betas(T))
# the data: a 1-D two-component Gaussian mixture
WEIGHTS, MEANS, STDS = torch.tensor([0.4, 0.6]), torch.tensor([-1.2, 1.0]), torch.tensor([0.3, 0.45])
GRID = torch.linspace(-6, 6, 601, dtype=torch.float64)
DX = float(GRID[1] - GRID[0])  # the reverse kernels' std is >= 0.3, far wider than DX


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _reverse(seed=0):
    torch.manual_seed(seed)
    return ReverseGaussian(SCHED, dim=1, hidden=32).double()


def _data_density(x):
    comps = Normal(MEANS.double(), STDS.double()).log_prob(x[..., None]).exp()
    return (comps * WEIGHTS.double()).sum(-1)


def _data_sample(n, g):
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=g)
    return (MEANS[k] + STDS[k] * torch.randn(n, generator=g)).double()[:, None]


def _bound_by_quadrature(rev, x0):
    """-K(x0) for scalar points x0 (B,): each expectation over x^(t) ~ q(x^(t) | x^(0)) by Gauss-Hermite."""
    z, w = hermegauss(60)
    z, w = torch.tensor(z), torch.tensor(w) / math.sqrt(2 * math.pi)  # E f(Z) = sum w f(z), Z ~ N(0, 1)
    b, n = len(x0), len(z)
    x0r = x0.repeat_interleave(n)[:, None]  # (B n, 1)
    terms = []
    for i in range(T):
        ab = float(SCHED.alpha_bars[i])
        xt = math.sqrt(ab) * x0r + math.sqrt(1 - ab) * z.repeat(b)[:, None]
        idx = torch.full((b * n,), i)
        f = first_step_nll(SCHED, x0r, xt) if i == 0 else step_kl(SCHED, rev, x0r, xt, idx)
        terms.append((f.view(b, n) * w).sum(1))
    terms.append(prior_kl(SCHED, x0[:, None]))
    return torch.stack(terms, 1)  # (B, T + 1): first, KL t = 2..T, prior


def _model_nll_by_quadrature(rev, x0):
    """-log p(x0) of the model: the density of x^(t) propagated down the reverse chain on a grid."""
    dens = Normal(0.0, 1.0).log_prob(GRID).exp()  # p(x^(T)) on the grid
    with torch.no_grad():
        for i in reversed(range(1, T)):  # x^(i+1) -> x^(i)
            mean, var = rev(GRID[:, None], torch.full((len(GRID),), i))
            kernel = Normal(mean, var.sqrt()).log_prob(GRID[None, :]).exp()  # (from, to)
            dens = (dens[:, None] * kernel).sum(0) * DX
    beta1 = float(SCHED.betas[0])
    last = Normal(GRID[:, None] * math.sqrt(1 - beta1), math.sqrt(beta1)).log_prob(x0[None, :]).exp()
    return -torch.log((dens[:, None] * last).sum(0) * DX)


def test_bound_equals_the_monte_carlo_log_ratio_of_whole_trajectories():
    # -K = E_q[log q(x^(1..T) | x^(0)) - log p(x^(0..T))], estimated from forward trajectories drawn step by
    # step and scored with plain Normal log-densities; the module computes it as per-step Gaussian KLs plus
    # the end terms, with each expectation over x^(t) done here by quadrature.
    rev = _reverse(1)
    x0 = torch.tensor([-1.2, 0.1, 1.4], dtype=torch.float64)
    with torch.no_grad():
        exact = _bound_by_quadrature(rev, x0).sum(1)  # (3,)
    n, g = 30_000, _g(2)
    for j in range(3):
        x = torch.full((n, 1), float(x0[j]), dtype=torch.float64)
        log_q = torch.zeros(n, dtype=torch.float64)
        log_p = torch.zeros(n, dtype=torch.float64)
        path = [x]
        for i in range(T):  # forward: x^(i+1) ~ q(. | x^(i))
            beta = float(SCHED.betas[i])
            nxt = path[-1] * math.sqrt(1 - beta) + math.sqrt(beta) * torch.randn(n, 1, generator=g, dtype=torch.float64)
            log_q += Normal(path[-1] * math.sqrt(1 - beta), math.sqrt(beta)).log_prob(nxt)[:, 0]
            path.append(nxt)
        log_p += Normal(0.0, 1.0).log_prob(path[T])[:, 0]
        with torch.no_grad():
            for i in range(1, T):  # learned steps x^(i+1) -> x^(i)
                mean, var = rev(path[i + 1], torch.full((n,), i))
                log_p += Normal(mean, var.sqrt()).log_prob(path[i])[:, 0]
        beta1 = float(SCHED.betas[0])
        log_p += Normal(path[1] * math.sqrt(1 - beta1), math.sqrt(beta1)).log_prob(path[0])[:, 0]
        ratio = log_q - log_p
        se = float(ratio.std()) / math.sqrt(n)
        assert abs(float(ratio.mean()) - float(exact[j])) < 4 * se + 1e-6, (float(ratio.mean()), float(exact[j]), se)
        # the module's own one-draw-per-step estimate agrees too
        with torch.no_grad():
            mc = bound(SCHED, rev, x[:10000], generator=_g(3 + j))
        assert abs(float(mc.mean()) - float(exact[j])) < 4 * float(mc.std()) / math.sqrt(10000)


def test_bound_is_at_least_the_model_nll_computed_by_quadrature_and_that_at_least_the_data_entropy():
    # Jensen: -K(x0) >= -log p(x0) for every x0, with p(x0) integrated over the whole reverse chain.
    rev = _reverse(4)
    x0 = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)
    with torch.no_grad():
        neg_k = _bound_by_quadrature(rev, x0).sum(1)
    nll = _model_nll_by_quadrature(rev, x0)
    assert (neg_k >= nll).all() and (neg_k - nll).min() > 1e-4
    # averaged over the data (by quadrature): bound >= cross-entropy >= data entropy
    q = _data_density(GRID)
    keep = q * DX > 1e-12
    xs, wq = GRID[keep], (q * DX)[keep] / (q * DX)[keep].sum()
    with torch.no_grad():
        avg_bound = float((_bound_by_quadrature(rev, xs).sum(1) * wq).sum())
    cross = float((_model_nll_by_quadrature(rev, xs) * wq).sum())
    entropy = float(-(torch.log(_data_density(xs)) * wq).sum())
    assert avg_bound >= cross >= entropy


def test_one_step_estimator_is_unbiased_for_the_bound_weighting_the_kl_by_T_minus_1():
    rev = _reverse(5)
    x0 = torch.full((40000, 1), 0.7, dtype=torch.float64)
    with torch.no_grad():
        exact = float(_bound_by_quadrature(rev, torch.tensor([0.7], dtype=torch.float64)).sum())
        est = [float(bound_loss(SCHED, rev, x0, generator=_g(6 + k))) for k in range(5)]
    mean = sum(est) / len(est)
    spread = max(est) - min(est)
    assert abs(mean - exact) < max(spread, 1e-3)
    kl = _bound_by_quadrature(rev, torch.tensor([0.7], dtype=torch.float64))[0, 1:T].sum()
    assert abs(mean - (exact + kl / (T - 1))) > 3 * spread  # model.py's weight T would be biased by mean KL


def test_end_terms_are_the_paper_entropies_plus_the_cross_entropy_excesses():
    # prior = -H_q(X^T|X^0) + E[-log pi(x^T)], first = H_q(X^1|X^0) + E[log pi(x^1) - log pi(x^0)]
    h = entropy_terms(SCHED)
    ab, beta1 = float(SCHED.alpha_bars[-1]), float(SCHED.betas[0])
    x0 = torch.tensor([[0.3]], dtype=torch.float64)
    cross_T = 0.5 * math.log(2 * math.pi) + 0.5 * (ab * 0.09 + 1 - ab)  # E[-log pi(x^T) | x0]
    assert math.isclose(float(prior_kl(SCHED, x0)), -h["H_q(X^T|X^0)"] + cross_T, rel_tol=1e-12)
    assert math.isclose(h["H_p(X^T)"] - cross_T, 0.5 * ab * (1 - 0.09), rel_tol=1e-9)  # 0 only if E x0^2 = 1
    with torch.no_grad():
        terms = _bound_by_quadrature(_reverse(0), x0[0])
    e_log_pi_ratio = -0.5 * ((1 - beta1) * 0.09 + beta1) + 0.5 * 0.09
    assert math.isclose(float(terms[0, 0]), h["H_q(X^1|X^0)"] + e_log_pi_ratio, rel_tol=1e-9)
    assert math.isclose(h["H_q(X^1|X^0)"], 0.5 * (1 + math.log(2 * math.pi * beta1)))


def test_schedule_leaves_about_one_over_T_of_the_signal_and_matches_model_py():
    betas = sohl_dickstein_betas(1000)
    assert math.isclose(float(betas[0]), 1e-3 + 1e-6 + (1 / 1000) * (1 - 1e-3 - 1e-6 - 1e-5), rel_tol=1e-12)
    assert math.isclose(float(betas[-1]), 1e-6 + 0.5 * (1 - 1e-6 - 1e-5), rel_tol=1e-12)
    ab = float(torch.prod(1 - betas))
    assert 0.5 / 1000 < ab < 2 / 1000  # model.py: 'a fraction ~1/T of the variance will be left'
    # the forward marginal is close to pi: KL(q(x^T | x^0) || N(0, 1)) is small for |x0| <= 1
    assert float(prior_kl(Schedule(betas), torch.tensor([[1.0]], dtype=torch.float64))) < 1e-2


def test_training_on_the_bound_lowers_the_model_nll_of_a_gaussian_mixture():
    rev = _reverse(7)
    opt = torch.optim.Adam(rev.parameters(), lr=3e-3)
    g = _g(8)
    q = _data_density(GRID)
    keep = q * DX > 1e-12
    xs, wq = GRID[keep], (q * DX)[keep] / (q * DX)[keep].sum()
    before = float((_model_nll_by_quadrature(rev, xs) * wq).sum())
    for _ in range(200):
        loss = bound_loss(SCHED, rev, _data_sample(256, g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float((_model_nll_by_quadrature(rev, xs) * wq).sum())
    entropy = float(-(torch.log(_data_density(xs)) * wq).sum())
    with torch.no_grad():
        avg_bound = float((_bound_by_quadrature(rev, xs).sum(1) * wq).sum())
    # seen: NLL 1.62 -> 1.38 nats, data entropy 1.13, bound 1.45
    assert avg_bound >= after >= entropy
    assert after < before - 0.15 and after - entropy < 0.35 and avg_bound - after < 0.15


def test_ancestral_samples_follow_the_model_density_obtained_by_quadrature():
    rev = _reverse(10)
    x = sample(SCHED, rev, (20000, 1), generator=_g(11), dtype=torch.float64)[:, 0]
    p = torch.exp(-_model_nll_by_quadrature(rev, GRID))
    cdf = torch.cumsum(p * DX, 0)
    emp = torch.searchsorted(torch.sort(x).values, GRID, right=True).double() / len(x)
    assert (cdf - emp).abs().max() < 0.02  # Kolmogorov-Smirnov distance; 1.36 / sqrt(20000) = 0.0096 at 5 %
