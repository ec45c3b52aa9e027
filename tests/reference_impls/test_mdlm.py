"""Properties of MDLM: SUBS (zero mask mass, carry-over), its bound equal to MD4's, the cached sampler."""

import torch
import torch.nn.functional as F

from reference_impls import discrete_diffusion as dd
from reference_impls import md4, mdlm

V, N = 5, 6
MASK = V


def _network(seed=0):
    """A fixed random 'network' over V + 1 input tokens with V + 1 output logits that depends on the whole z_t."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(V + 1, 8, generator=g, dtype=torch.float64)
    pos = torch.randn(N, 8, generator=g, dtype=torch.float64)
    out = 3 * torch.randn(8, V + 1, generator=g, dtype=torch.float64)

    def logits_fn(z, t):
        h = emb[z] + pos  # (B, N, 8)
        h = torch.tanh(h + h.mean(1, keepdim=True))  # every position sees every token
        return h @ out  # (B, N, V + 1), the [MASK] logit included

    return logits_fn


def _data(b=256, seed=1):
    return torch.randint(0, V, (b, N), generator=torch.Generator().manual_seed(seed))


def _noisy(x, frac=0.5, seed=2):
    g = torch.Generator().manual_seed(seed)
    return md4.forward_mask(x, torch.full((len(x),), frac, dtype=torch.float64), mask_id=MASK, generator=g)


def test_subs_copies_unmasked_tokens_exactly_and_puts_no_mass_on_mask():
    z = _noisy(_data())
    logits = 50 * _network()(z, None)  # large logits, including a large [MASK] logit
    logits[..., MASK] = 1e4
    p = mdlm.subs_log_probs(logits, z, mask_id=MASK).exp()  # (B, N, V + 1)
    unmasked = z != MASK
    assert unmasked.any() and (~unmasked).any()
    assert torch.equal(p[unmasked], F.one_hot(z[unmasked], V + 1).double())  # carry-over, bit for bit
    assert torch.equal(p[..., MASK], torch.zeros_like(p[..., MASK]))  # zero masking probability everywhere
    assert torch.allclose(p.sum(-1), torch.ones_like(p[..., 0]), atol=1e-12)
    # on masked positions SUBS is the softmax over the V data logits alone
    assert torch.allclose(p[~unmasked][:, :V], logits[~unmasked][:, :V].softmax(-1), atol=1e-12)


def test_loglinear_weight_is_md4s_weight_and_one_over_t():
    s = mdlm.LogLinearNoise(1e-3)
    t = torch.linspace(0.001, 1.0, 100, dtype=torch.float64, requires_grad=True)
    (dalpha,) = torch.autograd.grad(s.alpha(t).sum(), t)
    with torch.no_grad():
        md4_form = dalpha / (1 - s.alpha(t))  # MD4's alpha'_t / (1 - alpha_t) by autograd
        assert torch.allclose(s.weight(t), md4_form, atol=1e-9)  # MDLM's -sigma' / expm1(sigma)
        assert torch.allclose(s.weight(t), -1 / t, rtol=1e-9)  # the same 1/t as MD4's linear with eps = 0
        assert torch.allclose(s.alpha(t), 1 - (1 - 1e-3) * t, atol=1e-12)


def test_loss_equals_md4_bound_under_the_same_schedule_on_the_same_inputs():
    f = _network()
    x = _data()
    t = mdlm.sample_times(len(x), generator=torch.Generator().manual_seed(3))
    for s in [mdlm.LogLinearNoise(1e-3), md4.MaskingSchedule("linear"), md4.MaskingSchedule("cosine")]:
        got = mdlm.loss(f, x, t, mask_id=MASK, schedule=s, generator=torch.Generator().manual_seed(4))

        def md4_logits(z, tt):
            return f(z, tt)[..., :V]  # MD4's denoiser: logits over the V data classes only

        want = md4.diffusion_loss(
            md4_logits, x, t, mask_id=MASK, schedule=s, generator=torch.Generator().manual_seed(4)
        )
        assert torch.allclose(got, want, atol=1e-10), s
        assert (got >= 0).all() and (got > 0).float().mean() > 0.5  # 0 only when no token is masked
    # and the Monte Carlo bound is MD4's, draw for draw
    a = mdlm.nll_bound(f, x[:8], mask_id=MASK, schedule=s, n_t=4, generator=torch.Generator().manual_seed(5))
    b = md4.masked_diffusion_nll_bound(
        lambda z, tt: f(z, tt)[..., :V],
        x[:8],
        mask_id=MASK,
        schedule=s,
        n_t=4,
        generator=torch.Generator().manual_seed(5),
    )
    assert torch.allclose(a, b, atol=1e-10)


def test_d3pm_kl_terms_with_subs_collapse_to_the_weighted_masked_cross_entropy():
    # Rao-Blackwellisation: D3PM's per-step KL(q(z_s | z_t, x) || p(z_s | z_t)) on the absorbing chain, computed
    # by the shared discrete_diffusion module, equals (alpha_s - alpha_t) / (1 - alpha_t) sum_masked -log x_theta
    steps = 8
    sched = md4.MaskingSchedule("linear", 0.0)
    alpha = sched.alpha(torch.arange(0, steps + 1, dtype=torch.float64) / steps)  # alpha at i / T, i = 0..T
    chain = dd.absorbing_schedule(1 - alpha[1:] / alpha[:-1], V)  # cumulative keep rate = alpha_{i / T}
    assert torch.allclose(chain.keep_bar, alpha, atol=1e-12)
    f = _network()
    x = _data(64)
    g = torch.Generator().manual_seed(6)
    for i in range(1, steps + 1):
        ti = torch.full((len(x),), i, dtype=torch.long)
        z = dd.q_sample(chain, x, ti, g)
        log_x = mdlm.subs_log_probs(f(z, None), z, mask_id=MASK)
        kl = dd.vlb_terms(chain, x, z, ti, log_x.exp())  # (B,), summed over positions
        factor = (alpha[i - 1] - alpha[i]) / (1 - alpha[i])
        want = -factor * md4.masked_log_likelihood(log_x, x, z, mask_id=MASK)
        assert torch.allclose(kl, want, atol=1e-6), i


def test_stratified_times_put_one_draw_in_each_stratum():
    t = mdlm.sample_times(16, sampling_eps=0.0, generator=torch.Generator().manual_seed(7))
    strata = torch.floor(t * 16).long()
    assert torch.equal(torch.sort(strata).values, torch.arange(16))
    t = mdlm.sample_times(4096, generator=torch.Generator().manual_seed(8))
    assert t.min() >= 1e-3 and t.max() < 1


def test_cached_sampler_draws_the_same_tokens_with_at_most_one_call_per_change():
    f = _network()
    s = mdlm.LogLinearNoise()
    kw = dict(mask_id=MASK, schedule=s, num_steps=200)
    plain = mdlm.sample(f, (1, N), generator=torch.Generator().manual_seed(9), cache=False, **kw)
    cached = mdlm.sample(f, (1, N), generator=torch.Generator().manual_seed(9), cache=True, **kw)
    assert torch.equal(plain.tokens, cached.tokens) and (cached.tokens < V).all()
    assert plain.forward_passes >= 200
    assert cached.forward_passes <= N + 1  # z_t changes at most N times, one call after each (and the first)


def test_sampler_never_changes_a_token_once_unmasked():
    f = _network()
    s = mdlm.LogLinearNoise()
    seen = []

    def spy(z, t):
        seen.append(z.clone())
        return f(z, t)

    mdlm.sample(spy, (64, N), mask_id=MASK, schedule=s, num_steps=20, generator=torch.Generator().manual_seed(10))
    for before, after in zip(seen, seen[1:], strict=False):
        fixed = before != MASK
        assert torch.equal(after[fixed], before[fixed])
