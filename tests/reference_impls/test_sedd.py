import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reference_impls.sedd import (
    absorbing_dse,
    all_sequences,
    analytic_probs,
    denoise_probs,
    dwdse_loss,
    euler_probs,
    exact_log_score,
    loglinear_noise,
    marginal,
    perturb,
    sample,
    score_entropy,
    sequence_index,
)

K, L = 2, 2  # data classes, sequence length
M = K  # [MASK] index
S = K + 1
# a correlated law over the 4 clean sequences 00, 01, 10, 11: far from the product of its marginals
P0 = torch.tensor([0.5, 0.1, 0.05, 0.35], dtype=torch.float64)
NOISY = all_sequences(S, L)  # (9, 2) every noisy sequence
CLEAN = all_sequences(K, L)  # (4, 2)


def random_log_score(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(NOISY.shape[0], L, S, generator=g, dtype=torch.float64)
    out[..., M] = 0.0
    return out


def conditional_law(x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """p(x_t | x0) over NOISY for each clean x0 (4, 9), by the product over positions."""
    keep = np.exp(-sigma)
    per = torch.where(NOISY[None] == M, 1 - keep, (NOISY[None] == x0[:, None]).to(torch.float64) * keep)
    return per.prod(dim=-1)


def exact_score_entropy(log_score: torch.Tensor, sigma: float) -> torch.Tensor:
    """E_{x ~ p_t} sum over masked positions and data classes of the score entropy, true ratios as targets."""
    target = exact_log_score(P0, sigma, NOISY, num_classes=K).exp()[..., :K]  # (9, L, K)
    weight = (NOISY == M)[..., None].expand(-1, -1, K).to(torch.float64)  # Q(y, [MASK]) = 1 at masked positions
    per_x = score_entropy(log_score[..., :K], target, weight).sum(dim=-1)  # (9,)
    return marginal(P0, sigma, num_classes=K, length=L) @ per_x


def exact_dse(log_score: torch.Tensor, sigma: float) -> torch.Tensor:
    """E_{x0 ~ P0} E_{x_t | x0} sum_i DSE_i, every (x0, x_t) pair enumerated."""
    law = conditional_law(CLEAN, sigma)  # (4, 9)
    total = torch.zeros((), dtype=torch.float64)
    sig = torch.full((NOISY.shape[0], 1), sigma, dtype=torch.float64)
    for c in range(CLEAN.shape[0]):
        x0 = CLEAN[c].expand(NOISY.shape[0], L)
        dse = absorbing_dse(log_score, sig, NOISY, x0, mask_index=M).sum(dim=-1)  # (9,)
        total = total + P0[c] * (law[c] @ dse)
    return total


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_score_entropy_is_zero_at_the_true_ratios_and_positive_elsewhere(sigma):
    # every summand is the Bregman divergence a log(a/s) - a + s: 0 at s = a, > 0 otherwise
    true = exact_log_score(P0, sigma, NOISY, num_classes=K)
    assert exact_score_entropy(true, sigma).abs() < 1e-12
    for seed in range(5):
        assert exact_score_entropy(true + 0.3 * random_log_score(seed), sigma) > 1e-3
    # and the true ratios are a stationary point
    ls = true.clone().requires_grad_(True)
    exact_score_entropy(ls, sigma).backward()
    assert ls.grad.abs().max() < 1e-12


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_denoising_score_entropy_is_score_entropy_plus_a_constant_so_it_is_minimal_at_the_true_ratios(sigma):
    true = exact_log_score(P0, sigma, NOISY, num_classes=K)
    scores = [true] + [true + random_log_score(seed) for seed in range(3)] + [random_log_score(9)]
    gaps = torch.stack([exact_dse(s, sigma) - exact_score_entropy(s, sigma) for s in scores])
    assert torch.allclose(gaps, gaps[0].expand_as(gaps), atol=1e-10)
    assert gaps[0].abs() > 1e-2  # the constant is not trivially 0: DSE itself is not 0 at the optimum
    ls = true.clone().requires_grad_(True)
    exact_dse(ls, sigma).backward()
    assert ls.grad.abs().max() < 1e-12
    assert all(exact_dse(s, sigma) > exact_dse(true, sigma) + 1e-3 for s in scores[1:])


def test_one_masked_token_of_known_value_has_zero_loss_at_minus_log_expm1_sigma():
    # a point-mass data law: the optimum puts log s_{x0} = -log(e^sigma - 1) and every other ratio at 0
    sigma = torch.tensor([[0.8]], dtype=torch.float64)
    x_t, x0 = torch.tensor([[M]]), torch.tensor([[1]])
    best = torch.full((1, 1, S), -80.0, dtype=torch.float64)
    best[..., 1] = -torch.log(torch.expm1(sigma))
    best[..., M] = 0.0
    assert absorbing_dse(best, sigma, x_t, x0, mask_index=M).abs() < 1e-12
    for delta in (-0.5, 0.2):
        moved = best.clone()
        moved[..., 1] += delta
        assert absorbing_dse(moved, sigma, x_t, x0, mask_index=M) > 1e-3
    # an unmasked token contributes nothing whatever the score
    assert absorbing_dse(best + 1.0, sigma, x0, x0, mask_index=M) == 0


# ----------------------------------------------------------------------------- the likelihood bound


def model_log_score_fn(seed: int):
    """A time-dependent, wrong score: log s = log r(t) + log u(x, t), u >= 0.5 (eps = 0 noise, t = 1 - e^{-sigma})."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(NOISY.shape[0], L, K, generator=g, dtype=torch.float64)
    b = torch.randn(NOISY.shape[0], L, K, generator=g, dtype=torch.float64)

    def fn(x_t, sigma):
        t = -torch.expm1(-sigma)[:, None, None]
        idx = sequence_index(x_t, S)
        u = 0.5 + F.softplus(a[idx] + 2 * t * b[idx])
        out = torch.zeros(*x_t.shape, S, dtype=torch.float64)
        out[..., :K] = u.log() - torch.log(torch.expm1(sigma))[:, None, None]
        return out

    return fn


def exact_log_score_fn(x_t, sigma):
    assert (sigma == sigma[0]).all()  # one time per call, as in the sampler and the integrals here
    return exact_log_score(P0, float(sigma[0]), x_t, num_classes=K)


def near_log_score_fn(seed: int, size: float = 0.2):
    """The true log score plus a small time-dependent perturbation: a nearly right model."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(NOISY.shape[0], L, S, generator=g, dtype=torch.float64)
    b = torch.randn(NOISY.shape[0], L, S, generator=g, dtype=torch.float64)

    def fn(x_t, sigma):
        t = -torch.expm1(-sigma)[:, None, None]
        idx = sequence_index(x_t, S)
        return exact_log_score_fn(x_t, sigma) + size * (a[idx] + t * b[idx]) * (x_t == M)[..., None]

    return fn


def integrated_dwdse(log_score_fn, x0: torch.Tensor, nodes: int = 48) -> float:
    """int_0^1 sigma'(t) E_{x_t | x0} sum_i DSE_i dt by Gauss-Legendre in t, the expectation enumerated (eps = 0)."""
    u, w = np.polynomial.legendre.leggauss(nodes)
    total = 0.0
    for ti, wi in zip((u + 1) / 2, w / 2, strict=True):
        sigma, dsigma = loglinear_noise(torch.tensor(ti, dtype=torch.float64), eps=0.0)
        law = conditional_law(x0[None], float(sigma))[0]  # (9,)
        sig = sigma.expand(NOISY.shape[0])
        dse = absorbing_dse(log_score_fn(NOISY, sig), sig[:, None], NOISY, x0.expand_as(NOISY), mask_index=M)
        total += wi * float(dsigma * (law @ dse.sum(dim=-1)))
    return total


def moved_index() -> torch.Tensor:
    """(9, L, K): row of NOISY reached from each noisy state by setting position i to data class y."""
    moved = NOISY[:, None, None, :].repeat(1, L, K, 1)  # (9, L, K, L)
    for i in range(L):
        moved[:, i, :, i] = torch.arange(K)
    return sequence_index(moved, S)


def generated_law(log_score_fn, *, tau_max: float = 20.0, h: float = 0.05) -> torch.Tensor:
    """Law of x_0 under the reverse CTMC with rates sigma'(t) s(x, t), started all-[MASK] at t = 1 (eps = 0).

    In tau = -log t the rates are t sigma'(t) s (bounded); midpoint matrix exponentials over [0, tau_max].
    """
    n = NOISY.shape[0]
    dest, masked = moved_index().reshape(n, -1), (NOISY == M)[..., None].expand(n, L, K).reshape(n, -1)
    p = torch.zeros(n, dtype=torch.float64)
    p[sequence_index(torch.full((L,), M), S)] = 1.0
    for k in range(int(tau_max / h)):
        t = torch.tensor(np.exp(-(k + 0.5) * h), dtype=torch.float64)
        sigma, dsigma = loglinear_noise(t, eps=0.0)
        s = log_score_fn(NOISY, sigma.expand(n))[..., :K].exp().reshape(n, -1)  # (9, L K)
        rate = torch.where(masked, t * dsigma * s, torch.zeros((), dtype=torch.float64))
        gen = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, dest, rate)
        gen -= torch.diag(gen.sum(dim=1))
        p = p @ torch.linalg.matrix_exp(h * gen)
    return p[sequence_index(CLEAN, S)]


def test_integrated_denoising_score_entropy_is_the_exact_nll_at_the_true_score():
    # exact score: the reverse chain generates P0 and the bound is an equality for every x0
    exact_law = generated_law(exact_log_score_fn)
    assert torch.allclose(exact_law, P0, atol=1e-5)
    for c in range(CLEAN.shape[0]):
        assert integrated_dwdse(exact_log_score_fn, CLEAN[c]) == pytest.approx(-np.log(P0[c].item()), abs=1e-8)


def test_integrated_denoising_score_entropy_upper_bounds_the_nll_of_the_law_a_wrong_score_generates():
    # wrong, time-dependent scores (one far from the truth, one near it): each generates its own
    # law, whose NLL the bound exceeds for every x0; near the truth the gap is small
    for fn, largest_gap in ((model_log_score_fn(0), 5.0), (near_log_score_fn(1), 0.2)):
        law = generated_law(fn)
        assert law.sum() == pytest.approx(1.0, abs=1e-6)
        gaps = [integrated_dwdse(fn, CLEAN[c]) + np.log(law[c].item()) for c in range(CLEAN.shape[0])]
        assert min(gaps) > 1e-4 and max(gaps) < largest_gap, gaps


def test_official_monte_carlo_loss_averages_to_the_time_integral():
    fn = model_log_score_fn(0)
    x0 = CLEAN[2].expand(40000, L).clone()
    g = torch.Generator().manual_seed(0)
    noise = lambda t: loglinear_noise(t, eps=0.0)  # noqa: E731
    losses = dwdse_loss(fn, x0, mask_index=M, noise=noise, sampling_eps=0.0, generator=g)
    err = 4 * losses.std().item() / np.sqrt(losses.numel())
    assert losses.mean().item() == pytest.approx(integrated_dwdse(fn, CLEAN[2]), abs=err)


def test_loglinear_noise_masks_linearly_in_time_and_its_rate_is_the_derivative_of_the_total():
    t = torch.linspace(0.01, 0.99, 7, dtype=torch.float64).requires_grad_(True)
    sigma, dsigma = loglinear_noise(t, eps=1e-3)
    assert torch.allclose(-torch.expm1(-sigma), (1 - 1e-3) * t)
    (grad,) = torch.autograd.grad(sigma.sum(), t)
    assert torch.allclose(grad, dsigma, rtol=1e-12)


def test_perturb_masks_each_token_with_probability_one_minus_exp_minus_sigma():
    x0 = torch.zeros(200000, 1, dtype=torch.long)
    sigma = torch.full((200000, 1), 0.4, dtype=torch.float64)
    rate = (perturb(x0, sigma, mask_index=M, generator=torch.Generator().manual_seed(1)) == M).double().mean()
    assert rate.item() == pytest.approx(1 - np.exp(-0.4), abs=4e-3)


# ----------------------------------------------------------------------------- tau-leaping


def kernel_from_probs(probs: torch.Tensor) -> torch.Tensor:
    """(9, L, V) per-position step probabilities of every noisy state -> (9, V^L) law of the next state."""
    out = torch.ones(probs.shape[0], 1, dtype=torch.float64)
    for i in range(L):
        out = (out[:, :, None] * probs[:, i, None, :]).reshape(probs.shape[0], -1)
    return out


def sampler_law(steps: int, predictor: str, *, eps: float = 1e-5) -> torch.Tensor:
    """Exact law of `sample` with the exact score: the product of its step kernels (official noise eps = 1e-3)."""
    law = torch.zeros(NOISY.shape[0], dtype=torch.float64)
    law[-1] = 1.0  # all [MASK]
    times = torch.linspace(1, eps, steps + 1, dtype=torch.float64)
    dt = (1 - eps) / steps
    n = NOISY.shape[0]
    for i in range(steps):
        sigma, dsigma = loglinear_noise(times[i])
        score = exact_log_score(P0, float(sigma), NOISY, num_classes=K).exp()
        if predictor == "euler":
            probs = euler_probs(NOISY, score, (dt * dsigma).expand(n, 1), mask_index=M)
        else:
            dsig = sigma - loglinear_noise(times[i] - dt)[0]
            probs = analytic_probs(NOISY, score, dsig.expand(n, 1), mask_index=M)
        law = law @ kernel_from_probs(probs)
    sigma = loglinear_noise(times[-1])[0]
    score = exact_log_score(P0, float(sigma), NOISY, num_classes=K).exp()
    return law @ kernel_from_probs(denoise_probs(NOISY, score, mask_index=M))  # (4,) over CLEAN


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


@pytest.mark.parametrize("predictor", ["euler", "analytic"])
def test_tau_leaping_with_the_exact_score_approaches_the_data_as_the_step_shrinks(predictor):
    steps = [1, 2, 4, 16, 64, 256]
    dists = [tv(sampler_law(n, predictor), P0) for n in steps]
    assert all(a > b for a, b in zip(dists, dists[1:], strict=False)), dists
    assert dists[-1] < 0.01
    # one step unmasks both positions at once from their marginals: the product of the marginals
    # (up to the eps = 1e-3 chance that a position stays masked for the final denoiser)
    marg = P0.view(K, K)
    product = (marg.sum(1)[:, None] * marg.sum(0)[None, :]).reshape(-1)
    assert tv(sampler_law(1, predictor), product) < 5e-3
    assert tv(product, P0) > 0.2


def test_sampler_draws_follow_the_exact_law_of_its_steps():
    def score_fn(x, sigma):
        return exact_log_score_fn(x, sigma).exp()

    x = sample(score_fn, (3000, L), mask_index=M, steps=3, generator=torch.Generator().manual_seed(0))
    assert (x < K).all()
    freq = torch.bincount(sequence_index(x, K), minlength=4).double() / x.shape[0]
    law = sampler_law(3, "euler")
    assert torch.allclose(freq, law, atol=4 * (law * (1 - law) / x.shape[0]).sqrt().max().item())
