"""Properties of MD4's continuous-time masked diffusion: schedule weight, exact bound, Monte Carlo, sampler."""

import itertools
import math

import numpy as np
import pytest
import torch

from reference_impls import md4

V, N = 3, 3  # a tiny vocabulary and length: 27 sequences, 8 masks each
MASK = V


def _toy(seed=0):
    """A correlated distribution with full support over V^N: most mass on the constant sequences."""
    support = torch.tensor(list(itertools.product(range(V), repeat=N)))  # (27, N)
    g = torch.Generator().manual_seed(seed)
    w = 0.2 + torch.rand(len(support), generator=g, dtype=torch.float64)
    w = w + 6.0 * (support == support[:, :1]).all(-1).double()  # the constant sequences
    return support, w / w.sum()


def _masks():
    return torch.tensor(list(itertools.product([0, 1], repeat=N)), dtype=torch.bool)  # (8, N), True = masked


def _masked_ll_by_count(logits_fn, x):
    """A_k = sum over masks with k masked positions of sum_masked log mu_{x^n}, k = 0..N; x (N,) -> (N + 1,)."""
    m = _masks()
    z = torch.where(m, MASK, x[None].expand_as(m))  # (8, N)
    log_probs = torch.log_softmax(logits_fn(z, torch.zeros(len(z))).double(), -1)
    ll = md4.masked_log_likelihood(log_probs, x[None].expand_as(m), z, mask_id=MASK)  # (8,)
    return torch.zeros(N + 1, dtype=torch.float64).index_add_(0, m.sum(-1), ll)


def _expected_masked_ll(a_k, alpha):
    """E_{q(z_t | x)} sum_masked log mu, exactly: sum_k lam^k (1 - lam)^(N - k) A_k with lam = 1 - alpha_t."""
    lam = (1 - alpha)[..., None]
    k = torch.arange(N + 1, dtype=torch.float64)
    return (lam**k * (1 - lam) ** (N - k) * a_k).sum(-1)


def _quadrature_bound(logits_fn, x, schedule, nodes=64):
    """L_inf(x) = int_0^1 w(t) E[sum_masked log mu] dt by Gauss-Legendre on [0, 1] (exact for polynomials)."""
    u, wq = np.polynomial.legendre.leggauss(nodes)
    t = torch.tensor((u + 1) / 2, dtype=torch.float64)
    wq = torch.tensor(wq / 2, dtype=torch.float64)
    a_k = _masked_ll_by_count(logits_fn, x)
    return float((wq * schedule.weight(t) * _expected_masked_ll(a_k, schedule.alpha(t))).sum())


@pytest.mark.parametrize("kind", ["linear", "cosine", "poly2", "poly3"])
@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_weight_is_alpha_derivative_by_autograd_over_one_minus_alpha(kind, eps):
    s = md4.MaskingSchedule(kind, eps)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64, requires_grad=True)
    (dalpha,) = torch.autograd.grad(s.alpha(t).sum(), t)
    with torch.no_grad():
        assert torch.allclose(s.dalpha(t), dalpha, atol=1e-12)
        assert torch.allclose(s.weight(t), dalpha / (1 - s.alpha(t)), atol=1e-12)
        assert (s.weight(t) < 0).all()  # alpha decreases: the paper's sign, the loss is w(t) * (log-likelihood)
    ends = s.alpha(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(ends, torch.tensor([1 - eps, eps], dtype=torch.float64), atol=1e-15)


def test_linear_schedule_weight_is_minus_one_over_t():
    t = torch.linspace(0.001, 1.0, 200, dtype=torch.float64)
    assert torch.allclose(md4.MaskingSchedule("linear", 0.0).weight(t), -1 / t, rtol=1e-12)
    # with the official eps the closed form is -(1 - 2 eps) / (eps + (1 - 2 eps) t)
    e = 1e-4
    assert torch.allclose(md4.MaskingSchedule("linear", e).weight(t), -(1 - 2 * e) / (e + (1 - 2 * e) * t))


def test_cosine_and_polynomial_weights_are_the_closed_forms_of_table_4():
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    cosine = md4.MaskingSchedule("cosine", 0.0).weight(t)
    assert torch.allclose(cosine, -math.pi / 2 * torch.tan(math.pi / 2 * (1 - t)), rtol=1e-10)
    for w in [0.5, 2.0, 3.0]:
        assert torch.allclose(md4.MaskingSchedule(f"poly{w}", 0.0).weight(t), -w / t, rtol=1e-10)


def test_exact_denoiser_equals_bayes_rule_by_hand():
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    z = torch.tensor([[1, MASK, MASK]])
    # q(x^2 = v | x^1 = 1) by summing the joint over x^3 by hand
    joint = q.view(V, V, V)[1]  # (x^2, x^3)
    want = joint.sum(1) / joint.sum()
    assert torch.allclose(f(z, torch.zeros(1))[0, 1].exp(), want, atol=1e-12)
    assert torch.allclose(f(z, torch.zeros(1))[0, 0].exp(), torch.eye(V, dtype=torch.float64)[1], atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "cosine", "poly3"])
def test_bound_with_exact_denoiser_equals_true_nll_of_every_sequence_whatever_the_schedule(kind):
    # eps = 0 (alpha_0 = 1, alpha_1 = 0): no reconstruction or prior term, and the continuous-time bound is
    # tight for the exact posterior, L_inf(x) = -log q(x), for every x and every schedule.
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    s = md4.MaskingSchedule(kind, 0.0)
    got = torch.tensor([_quadrature_bound(f, x, s, nodes=96) for x in support], dtype=torch.float64)
    assert torch.allclose(got, -q.log(), atol=1e-6), (got + q.log()).abs().max()


def test_any_other_denoiser_gives_a_larger_expected_bound():
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    noise = torch.randn(N, V, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def g(z, t):
        return f(z, t) + 0.5 * noise  # a wrong denoiser: the same perturbation at every context

    s = md4.MaskingSchedule("linear", 0.0)
    entropy = float(-(q * q.log()).sum())
    bound_g = sum(float(p) * _quadrature_bound(g, x, s) for x, p in zip(support, q, strict=True))
    bound_f = sum(float(p) * _quadrature_bound(f, x, s) for x, p in zip(support, q, strict=True))
    assert bound_f == pytest.approx(entropy, abs=1e-9)
    assert bound_g > entropy + 1e-3


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("antithetic", [True, False])
def test_monte_carlo_bound_is_unbiased_for_the_quadrature_integral(kind, antithetic):
    # the official eps = 1e-4 and a denoiser that is not the exact one: unbiasedness must not rely on either
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    noise = torch.randn(N, V, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def g(z, t):
        return f(z, t) + noise

    s = md4.MaskingSchedule(kind, 1e-4)
    gen = torch.Generator().manual_seed(3)
    for x in support[[0, 5, 13]]:
        reps = 4000  # independent estimates, each the mean over n_t = 4 times (one lattice when antithetic)
        est = md4.masked_diffusion_nll_bound(
            g, x[None].expand(reps, N), mask_id=MASK, schedule=s, n_t=4, generator=gen, antithetic=antithetic
        )
        exact = _quadrature_bound(g, x, s)
        se = float(est.std()) / math.sqrt(reps)
        assert abs(float(est.mean()) - exact) < 4 * se, (float(est.mean()), exact, se)
        assert se < 0.05 * exact  # the check has power: 4 SE is a few percent of the value


def test_reconstruction_and_prior_terms_are_the_appendix_forms_and_vanish_without_eps():
    s0, s1 = md4.MaskingSchedule("linear", 0.0), md4.MaskingSchedule("linear", 1e-4)
    assert md4.reconstruction_loss(N, V, s0) == 0.0 and md4.prior_loss(N, V, s0) == 0.0
    assert md4.reconstruction_loss(1024, 50257, s1) == pytest.approx(1024 * 1e-4 * math.log(50257))
    assert md4.prior_loss(1024, 50257, s1) == pytest.approx(1024 * 1e-4 * math.log(50257))
    # with vocab_size the bound adds both to the Monte Carlo diffusion term, draw for draw
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    x = support[:4]
    a = md4.masked_diffusion_nll_bound(
        f, x, mask_id=MASK, schedule=s1, n_t=2, generator=torch.Generator().manual_seed(0)
    )
    b = md4.masked_diffusion_nll_bound(
        f, x, mask_id=MASK, schedule=s1, n_t=2, generator=torch.Generator().manual_seed(0), vocab_size=V
    )
    assert torch.allclose(b - a, torch.full_like(a, 2 * N * 1e-4 * math.log(V)), atol=1e-12)


def test_one_step_discrete_bound_is_the_sum_of_marginal_nlls_and_more_steps_tighten_it():
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    s = md4.MaskingSchedule("linear", 0.0)
    marginals = torch.stack([q.view(V, V, V).sum(dim=tuple(j for j in range(N) if j != n)) for n in range(N)])
    gen = torch.Generator().manual_seed(4)
    x = support[[0, 7, 20]]
    one = md4.discrete_time_loss(f, x, torch.rand(3, generator=gen).double(), num_steps=1, mask_id=MASK, schedule=s)
    want = -marginals.log().gather(1, x.T).sum(0)  # sum_n -log q(x^n): one step unmasks all tokens independently
    assert torch.allclose(one, want, atol=1e-10)
    # expected L_T over the data, exactly (every grid point, every mask), falls towards H(q) as T doubles
    a_k = torch.stack([_masked_ll_by_count(f, xx) for xx in support])  # (27, N + 1)
    entropy = float(-(q * q.log()).sum())
    prev = math.inf
    for steps in [1, 2, 4, 8, 16, 64, 512]:
        t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        a_t, a_s = s.alpha(t), s.alpha(t - 1 / steps)
        per_x = -((a_s - a_t) / (1 - a_t) * _expected_masked_ll(a_k[:, None], a_t)).sum(-1)  # (27,)
        bound = float((q * per_x).sum())
        assert entropy - 1e-9 <= bound < prev
        prev = bound
    assert prev - entropy < 2e-3
    assert float((q * -(marginals.log().gather(1, support.T).sum(0))).sum()) > entropy + 0.1  # L_1 is loose here


def test_forward_mask_keeps_each_token_with_probability_alpha_and_never_changes_it():
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, V, (4000, 16), generator=gen)
    alpha = torch.full((4000,), 0.3, dtype=torch.float64)
    z = md4.forward_mask(x, alpha, mask_id=MASK, generator=gen)
    kept = z != MASK
    assert torch.equal(z[kept], x[kept])
    assert abs(kept.double().mean().item() - 0.3) < 0.005


def test_antithetic_times_form_a_shifted_lattice_and_are_uniform():
    gen = torch.Generator().manual_seed(6)
    t = md4.sample_times(8, antithetic=True, generator=gen)
    gaps = torch.sort(t).values.diff()
    assert torch.allclose(gaps, torch.full((7,), 1 / 8, dtype=torch.float64), atol=1e-12)
    pooled = torch.cat([md4.sample_times(8, antithetic=True, generator=gen) for _ in range(4000)])
    hist = torch.histc(pooled.float(), bins=10, min=0, max=1) / len(pooled)
    assert (hist - 0.1).abs().max() < 0.01


def _tv(samples, target):
    idx = (samples * torch.tensor([V**2, V, 1])).sum(-1)
    emp = torch.bincount(idx, minlength=V**N).double() / len(samples)
    return 0.5 * float((emp - target).abs().sum())


@pytest.mark.parametrize("grid", ["cosine", "uniform"])
def test_ancestral_sampler_draws_the_joint_with_many_steps_and_the_product_of_marginals_with_one(grid):
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    s = md4.MaskingSchedule("linear", 0.0)
    gen = torch.Generator().manual_seed(7)
    many = md4.sample(f, (8000, N), mask_id=MASK, schedule=s, num_steps=64, generator=gen, grid=grid)
    assert many.forward_passes == 64 and (many.tokens < V).all()
    assert _tv(many.tokens, q) < 0.04  # sampling noise ~0.02 at 8,000 draws; the step bias is O(1 / steps)
    qv = q.view(V, V, V)
    product = torch.einsum("i,j,k->ijk", qv.sum((1, 2)), qv.sum((0, 2)), qv.sum((0, 1))).flatten()
    one = md4.sample(f, (8000, N), mask_id=MASK, schedule=s, num_steps=1, generator=gen, grid=grid)
    assert _tv(one.tokens, product) < 0.04 and _tv(one.tokens, q) > 0.1
    assert 0.5 * float((product - q).abs().sum()) > 0.15  # the two targets are far apart on this toy


def test_only_masked_positions_enter_the_loss():
    # a denoiser that is arbitrary wherever z_t is unmasked gives the same loss: those positions carry no term
    support, q = _toy()
    f = md4.exact_denoiser(support, q, mask_id=MASK, vocab_size=V)
    junk = torch.randn(64, N, V, generator=torch.Generator().manual_seed(8), dtype=torch.float64)

    def g(z, t):
        return torch.where((z == MASK)[..., None], f(z, t), 5 * junk[: len(z)])

    s = md4.MaskingSchedule("cosine", 1e-4)
    x = support[torch.randint(0, len(support), (64,), generator=torch.Generator().manual_seed(9))]
    t = torch.rand(64, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    a = md4.diffusion_loss(f, x, t, mask_id=MASK, schedule=s, generator=torch.Generator().manual_seed(11))
    b = md4.diffusion_loss(g, x, t, mask_id=MASK, schedule=s, generator=torch.Generator().manual_seed(11))
    assert torch.allclose(a, b, atol=1e-12) and (a > 0).any()
