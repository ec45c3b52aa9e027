import itertools
import math

import numpy as np
import pytest
import torch

from reference_impls.md4 import MaskingSchedule, masked_diffusion_nll_bound, masked_log_likelihood
from reference_impls.radd import (
    RADDDenoiser,
    any_order_nll,
    as_md4_logits_fn,
    exact_conditional,
    expected_any_order_nll,
    k_dce,
    k_dce_loss,
    lambda_dce,
    lambda_dce_loss,
    mask_k,
    masked_cross_entropy,
    sample,
    score_from_conditional,
    t_dce,
    t_dce_loss,
    update_probability,
)
from reference_impls.sedd import (
    absorbing_dse,
    all_sequences,
    analytic_probs,
    euler_probs,
    exact_log_score,
    loglinear_noise,
    score_scale,
    sequence_index,
)

K, L = 3, 3
M = K
S = K + 1
NOISY = all_sequences(S, L)  # (64, 3)
CLEAN = all_sequences(K, L)  # (27, 3)


def data_law(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K**L, generator=g, dtype=torch.float64) ** 3  # uneven, every sequence possible
    return w / w.sum()


def table_model(seed: int):
    """A time-free conditional model c_theta(x_t): one random softmax row per (noisy state, position)."""
    g = torch.Generator().manual_seed(seed)
    table = (2 * torch.randn(NOISY.shape[0], L, K, generator=g, dtype=torch.float64)).log_softmax(dim=-1)
    return lambda x: table[sequence_index(x, S)]


def exact_model(p0: torch.Tensor):
    return lambda x: exact_conditional(p0, x, num_classes=K).log()


def masks_of(x0: torch.Tensor) -> torch.Tensor:
    """Every way of masking x0 (2^L rows)."""
    pattern = torch.tensor(list(itertools.product([0, 1], repeat=L)), dtype=torch.bool)
    return torch.where(pattern, M, x0.expand(pattern.shape[0], L))


# ----------------------------------------------------------------------------- the factorised score


@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0])
def test_concrete_score_is_the_time_scalar_times_the_clean_conditional_at_every_masked_position(sigma):
    p0 = data_law()
    brute = exact_log_score(p0, sigma, NOISY, num_classes=K)  # ratios p_t(x^i <- y) / p_t(x) by enumeration
    cond = exact_conditional(p0, NOISY, num_classes=K)  # p_0(x^i = y | x_t^UM), no time in it
    factorised = score_from_conditional(cond.log(), torch.full((NOISY.shape[0], 1), sigma), NOISY, mask_index=M)
    masked = (NOISY == M)[..., None].expand(-1, -1, K)
    assert torch.allclose(brute[..., :K][masked], factorised[..., :K][masked], atol=1e-10)
    # the scalar is e^{-sigma} / (1 - e^{-sigma}): the scores of a masked position sum to it
    total = brute[..., :K].exp().sum(dim=-1)[NOISY == M]
    assert torch.allclose(total, torch.full_like(total, np.exp(-sigma) / (1 - np.exp(-sigma))), atol=1e-10)


def test_the_score_divided_by_its_scalar_does_not_depend_on_time():
    p0 = data_law(1)
    masked = (NOISY == M)[..., None].expand(-1, -1, K)
    ratios = [
        (
            exact_log_score(p0, s, NOISY, num_classes=K)[..., :K]
            - score_scale(torch.tensor(s, dtype=torch.float64)).log()
        )[masked]
        for s in (0.1, 1.0, 5.0)
    ]
    assert torch.allclose(ratios[0], ratios[1], atol=1e-10) and torch.allclose(ratios[0], ratios[2], atol=1e-10)
    # whereas the score itself does
    assert not torch.allclose(
        exact_log_score(p0, 0.1, NOISY, num_classes=K), exact_log_score(p0, 1.0, NOISY, num_classes=K)
    )


def test_score_entropy_of_the_factorised_score_is_the_scaled_cross_entropy():
    # sum_y r c_y - r log(r c_x0) + K(r) = -r log c_x0 when c sums to 1; not otherwise
    fn = table_model(0)
    x0 = CLEAN[torch.randint(0, K**L, (NOISY.shape[0],), generator=torch.Generator().manual_seed(0))]
    sigma = torch.full((NOISY.shape[0], 1), 0.9, dtype=torch.float64)
    log_cond = fn(NOISY)
    dse = absorbing_dse(score_from_conditional(log_cond, sigma, NOISY, mask_index=M), sigma, NOISY, x0, mask_index=M)
    ce = score_scale(sigma[:, 0]) * masked_cross_entropy(log_cond, NOISY, x0, mask_index=M)
    assert torch.allclose(dse.sum(dim=-1), ce, atol=1e-12)
    unnormalised = score_from_conditional(log_cond + 0.3, sigma, NOISY, mask_index=M)
    assert not torch.allclose(absorbing_dse(unnormalised, sigma, NOISY, x0, mask_index=M).sum(dim=-1), ce)


# ----------------------------------------------------------------------------- the bound as an any-order AR NLL


def t_dse_integral(fn, x0: torch.Tensor, nodes: int = 8) -> float:
    """SEDD's bound: int_0^1 sigma'(t) E_{x_t | x0} sum_i DSE_i dt with the factorised score (eps = 0 noise)."""
    xs = masks_of(x0)
    n_masked = (xs == M).sum(dim=-1).double()
    u, w = np.polynomial.legendre.leggauss(nodes)
    total = 0.0
    for ti, wi in zip((u + 1) / 2, w / 2, strict=True):
        sigma, dsigma = loglinear_noise(torch.tensor(ti, dtype=torch.float64), eps=0.0)
        law = ti**n_masked * (1 - ti) ** (L - n_masked)  # P(x_t | x0), eps = 0: mask probability t
        sig = sigma.expand(xs.shape[0], 1)
        dse = absorbing_dse(
            score_from_conditional(fn(xs), sig, xs, mask_index=M), sig, xs, x0.expand_as(xs), mask_index=M
        )
        total += wi * float(dsigma * (law @ dse.sum(dim=-1)))
    return total


def t_dce_integral(fn, x0: torch.Tensor, nodes: int = 8) -> float:
    xs = masks_of(x0)
    n_masked = (xs == M).sum(dim=-1).double()
    u, w = np.polynomial.legendre.leggauss(nodes)
    total = 0.0
    for ti, wi in zip((u + 1) / 2, w / 2, strict=True):
        sigma, dsigma = loglinear_noise(torch.tensor(ti, dtype=torch.float64).expand(xs.shape[0]), eps=0.0)
        law = ti**n_masked * (1 - ti) ** (L - n_masked)
        total += wi * float(law @ t_dce(fn(xs), xs, x0.expand_as(xs), sigma, dsigma, mask_index=M))
    return total


def lambda_dce_integral(fn, x0: torch.Tensor, nodes: int = 8) -> float:
    xs = masks_of(x0)
    n_masked = (xs == M).sum(dim=-1).double()
    u, w = np.polynomial.legendre.leggauss(nodes)
    total = 0.0
    for li, wi in zip((u + 1) / 2, w / 2, strict=True):
        lam = torch.full((xs.shape[0],), li, dtype=torch.float64)
        law = li**n_masked * (1 - li) ** (L - n_masked)
        total += wi * float(law @ lambda_dce(fn(xs), xs, x0.expand_as(xs), lam, mask_index=M))
    return total


def k_dce_expectation(fn, x0: torch.Tensor) -> float:
    xs = masks_of(x0)
    n_masked = (xs == M).sum(dim=-1).double()
    keep = n_masked > 0
    xs, n_masked = xs[keep], n_masked[keep]
    # k ~ U{1..L}, then one of the C(L, k) subsets of size k
    weight = torch.tensor([1 / (L * math.comb(L, int(k))) for k in n_masked], dtype=torch.float64)
    return float(weight @ k_dce(fn(xs), xs, x0.expand_as(xs), mask_index=M))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_diffusion_bound_equals_the_any_order_autoregressive_nll_averaged_over_all_orders(seed):
    fn = table_model(seed)  # any time-free conditional, not the true one
    for c in range(0, K**L, 4):
        x0 = CLEAN[c][None]
        ao_ar = float(expected_any_order_nll(fn, x0, mask_index=M))
        assert t_dse_integral(fn, x0) == pytest.approx(ao_ar, abs=1e-9)
        assert t_dce_integral(fn, x0) == pytest.approx(ao_ar, abs=1e-9)
        assert lambda_dce_integral(fn, x0) == pytest.approx(ao_ar, abs=1e-9)
        assert k_dce_expectation(fn, x0) == pytest.approx(ao_ar, abs=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine", "poly2"])
def test_md4_bound_of_a_time_free_denoiser_is_the_any_order_nll_under_every_schedule(kind):
    # MD4's L_inf = int_0^1 w(t) E sum_masked log mu dt (reference_impls.md4), masks enumerated, t by quadrature:
    # with mu free of t the substitution lambda = 1 - alpha_t makes it the lambda-DCE, whatever alpha_t is
    fn = table_model(6)
    schedule = MaskingSchedule(kind=kind, eps=0.0)
    logits_fn = as_md4_logits_fn(fn)
    u, w = np.polynomial.legendre.leggauss(64)
    for c in (0, 13, 26):
        x0 = CLEAN[c][None]
        xs = masks_of(x0)
        n_masked = (xs == M).sum(dim=-1).double()
        total = 0.0
        for ti, wi in zip((u + 1) / 2, w / 2, strict=True):
            t = torch.tensor(ti, dtype=torch.float64)
            lam = 1 - schedule.alpha(t)
            law = lam**n_masked * (1 - lam) ** (L - n_masked)
            ll = masked_log_likelihood(logits_fn(xs, t.expand(xs.shape[0])), x0.expand_as(xs), xs, mask_id=M)
            total += wi * float(schedule.weight(t) * (law @ ll))
        assert total == pytest.approx(float(expected_any_order_nll(fn, x0, mask_index=M)), abs=1e-6)


def test_md4_monte_carlo_bound_on_a_radd_denoiser_is_unbiased_for_the_any_order_nll():
    fn = table_model(7)
    x0 = CLEAN[5][None].expand(40000, L).clone()
    per_draw = masked_diffusion_nll_bound(
        as_md4_logits_fn(fn),
        x0,
        mask_id=M,
        schedule=MaskingSchedule(eps=0.0),
        n_t=1,
        generator=torch.Generator().manual_seed(0),
    )  # (40000,): one time per row
    err = 4 * per_draw.std().item() / math.sqrt(per_draw.numel())
    target = float(expected_any_order_nll(fn, x0[:1], mask_index=M))
    assert per_draw.mean().item() == pytest.approx(target, abs=err)


def test_the_bound_is_the_nll_at_the_true_conditional_and_bounds_the_order_mixture_otherwise():
    p0 = data_law(2)
    exact, wrong = exact_model(p0), table_model(3)
    orders = list(itertools.permutations(range(L)))
    for c in range(K**L):
        x0 = CLEAN[c][None]
        # every order factorises the same joint: each AO-AR NLL is -log p0(x0)
        per_order = [float(any_order_nll(exact, x0, list(o), mask_index=M)) for o in orders]
        assert per_order == pytest.approx([-math.log(p0[c])] * len(orders), abs=1e-10)
        # a wrong model: the expected NLL over orders >= -log of the order mixture (Jensen), strictly here
        nll = torch.stack([any_order_nll(wrong, x0, list(o), mask_index=M)[0] for o in orders])
        mixture = -torch.logsumexp(-nll, dim=0) + math.log(len(orders))
        assert float(expected_any_order_nll(wrong, x0, mask_index=M)) > float(mixture) + 1e-6


def test_one_sample_losses_are_unbiased_for_the_bound():
    fn = table_model(4)
    x0_single = CLEAN[17][None]
    target = float(expected_any_order_nll(fn, x0_single, mask_index=M))
    x0 = x0_single.expand(40000, L).clone()
    noise = lambda t: loglinear_noise(t, eps=0.0)  # noqa: E731
    for loss_fn, kwargs in (
        (lambda_dce_loss, {}),
        (k_dce_loss, {}),
        (t_dce_loss, {"noise": noise, "sampling_eps": 0.0}),
    ):
        losses = loss_fn(fn, x0, mask_index=M, generator=torch.Generator().manual_seed(5), **kwargs)
        err = 4 * losses.std().item() / math.sqrt(losses.numel())
        assert losses.mean().item() == pytest.approx(target, abs=err), loss_fn.__name__


def test_mask_k_masks_exactly_k_positions_with_every_subset_equally_likely():
    x0 = torch.zeros(30000, L, dtype=torch.long)
    xs = mask_k(x0, torch.full((30000,), 2), mask_index=M, generator=torch.Generator().manual_seed(0))
    assert ((xs == M).sum(dim=-1) == 2).all()
    freq = torch.bincount(sequence_index((xs == M).long(), 2), minlength=2**L).double() / 30000
    assert torch.allclose(freq[[3, 5, 6]], torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.015)


# ----------------------------------------------------------------------------- the time-free denoiser and its sampler


@pytest.mark.parametrize("method", ["tweedie", "euler"])
def test_one_unmasking_step_is_seddss_step_with_the_factorised_score(method):
    fn = table_model(5)
    x = NOISY[(NOISY == M).any(dim=-1)]
    t, dt = 0.6, 0.05
    rate = update_probability(t, dt, method=method)
    sigma, dsigma = loglinear_noise(torch.tensor(t, dtype=torch.float64))
    sig = sigma.expand(x.shape[0], 1)
    score = score_from_conditional(fn(x), sig, x, mask_index=M).exp()
    if method == "tweedie":
        step = analytic_probs(
            x,
            score,
            (sigma - loglinear_noise(torch.tensor(t - dt, dtype=torch.float64))[0]).expand(x.shape[0], 1),
            mask_index=M,
        )
    else:
        step = euler_probs(x, score, (dt * dsigma).expand(x.shape[0], 1), mask_index=M)
    masked = x == M
    assert torch.allclose(step[masked][:, :K], rate * fn(x).exp()[masked], atol=1e-12)
    assert torch.allclose(step[masked][:, K], torch.full_like(step[masked][:, K], 1 - rate), atol=1e-12)


def test_denoiser_has_no_time_input_and_caching_its_output_changes_no_sample():
    torch.manual_seed(0)
    net = RADDDenoiser(K, L).eval()
    probs = net(NOISY).exp()
    assert torch.allclose(probs.sum(dim=-1), torch.ones(NOISY.shape[0], L))
    kw = dict(mask_index=M, steps=32)
    cached, n_cached = sample(net, (64, L), cache=True, generator=torch.Generator().manual_seed(1), **kw)
    plain, n_plain = sample(net, (64, L), cache=False, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(cached, plain) and (cached < K).all()
    assert n_plain == 64 * 32 and n_cached <= 64 * (L + 1)  # at most one re-run per change, plus the first


def test_sampler_with_the_true_conditional_and_many_steps_draws_the_data_law():
    p0 = data_law(6)

    def tv_to_data(steps: int) -> tuple[float, int]:
        x, runs = sample(
            exact_model(p0), (12000, L), mask_index=M, steps=steps, generator=torch.Generator().manual_seed(2)
        )
        freq = torch.bincount(sequence_index(x, K), minlength=K**L).double() / x.shape[0]
        return 0.5 * float((freq - p0).abs().sum()), runs

    tv_fine, runs = tv_to_data(128)
    assert tv_fine < 0.035  # sampling noise of 12,000 draws over 27 sequences is about 0.02
    assert runs <= 12000 * (L + 1)  # 128 steps, at most L + 1 network runs per sequence
    assert tv_to_data(2)[0] > 0.1  # two steps unmask tokens together from product conditionals
