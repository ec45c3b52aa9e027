import inspect
import math

import pytest
import torch

import reference_impls.mar as mar_module
from reference_impls import ddpm
from reference_impls.mar import ContinuousARPrior, DenoiserMLP, DiffusionLoss, MaskedARPrior, mar_loss, sample

C, N, DIM = 4, 6, 32


def models(num_steps=1000, randomise_head=True):
    torch.manual_seed(0)
    prior = ContinuousARPrior(token_dim=C, n_tokens=N, n_classes=3, dim=DIM, n_layers=2, n_heads=2)
    diffloss = DiffusionLoss(token_dim=C, cond_dim=DIM, width=24, depth=2, num_steps=num_steps)
    if randomise_head:  # the official zero init makes eps_theta = 0; give the head some weights to test with
        for p in diffloss.net.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return prior.eval(), diffloss


def tokens(b=2, seed=1):
    return torch.randn(b, N, C, generator=torch.Generator().manual_seed(seed))


def test_loss_is_the_diffusion_loss_conditioned_on_the_ar_output():
    prior, diffloss = models()
    x, c = tokens(), torch.tensor([0, 2])
    loss = mar_loss(prior, diffloss, x, c, batch_mul=3, generator=torch.Generator().manual_seed(5))
    # by hand: z from the causal prior, then DDPM's noising and the eps regression, with the same draws
    z = prior(x[:, :-1], c).reshape(2 * N, -1).repeat(3, 1)
    x0 = x.reshape(2 * N, C).repeat(3, 1)
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (3 * 2 * N,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    s = diffloss.schedule
    x_t = s.alpha_bars.sqrt()[t].float()[:, None] * x0 + (1 - s.alpha_bars).sqrt()[t].float()[:, None] * eps
    expected = ((eps - diffloss.net(x_t, t, z)) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_schedule_is_ddpm_cosine_with_1000_steps():
    _, diffloss = models(randomise_head=False)
    torch.testing.assert_close(diffloss.schedule.betas, ddpm.cosine_betas(1000))


def test_the_condition_z_steers_the_loss_and_carries_its_gradient_into_the_transformer():
    prior, diffloss = models()
    x, c = tokens(), torch.tensor([1, 1])
    loss = mar_loss(prior, diffloss, x, c, batch_mul=1, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad(loss, [p for p in prior.parameters()], allow_unused=True)
    assert sum(g.abs().sum() for g in grads if g is not None) > 0
    other = mar_loss(prior, diffloss, x, torch.tensor([2, 2]), batch_mul=1, generator=torch.Generator().manual_seed(2))
    assert (loss - other).abs() > 1e-6  # same noise and steps, different class -> different z -> different loss


def test_no_quantiser_anywhere_tokens_enter_continuously_and_the_output_moves_smoothly():
    prior, diffloss = models()
    for m in [*prior.modules(), *diffloss.modules()]:
        if isinstance(m, torch.nn.Embedding):
            assert m is prior.cls_emb  # the only table is the class embedding, no codebook
        assert "Quantiz" not in type(m).__name__ and "VQ" not in type(m).__name__
    source = inspect.getsource(mar_module)
    assert "reference_impls.vq" not in source and "residual_vq" not in source
    # z is differentiable in the tokens: a first-order change, where a quantiser would give 0 or a jump
    x, c = tokens(1, seed=3).double(), torch.tensor([0])
    prior = prior.double()
    v = torch.randn_like(x)
    jvp = torch.autograd.functional.jvp(lambda inp: prior(inp, c), (x,), (v,))[1]
    eps = 1e-6
    finite = (prior(x + eps * v, c) - prior(x - eps * v, c)) / (2 * eps)
    torch.testing.assert_close(finite, jvp, rtol=1e-5, atol=1e-7)
    assert jvp[:, 1:].abs().max() > 1e-3


def test_prior_is_causal_z_i_reads_only_earlier_tokens():
    prior, _ = models()
    x, c = tokens(1, seed=4), torch.tensor([1])
    x2 = x.clone()
    x2[:, 3] += 1.0
    a, b = prior(x[:, :-1], c), prior(x2[:, :-1], c)  # z_0 .. z_{N-1}
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=1e-6)
    assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-4


def test_masked_loss_averages_only_the_masked_tokens():
    _, diffloss = models()
    x, z = torch.randn(5, C), torch.randn(5, DIM)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])

    def g():
        return torch.Generator().manual_seed(7)

    full = diffloss(x, z, generator=g())
    masked = diffloss(x, z, mask=mask, generator=g())
    gen = g()
    t = torch.randint(0, 1000, (5,), generator=gen)
    eps = torch.randn(5, C, generator=gen)  # the same draws, in the same order, as inside
    per = ((eps - diffloss.net(ddpm.q_sample(diffloss.schedule, x, t, eps), t, z)) ** 2).mean(-1)
    torch.testing.assert_close(full, per.mean())
    torch.testing.assert_close(masked, (per[0] + per[2]) / 2)


def test_official_initialisation_predicts_zero_noise():
    net = DenoiserMLP(token_dim=C, cond_dim=DIM, width=16, depth=2)
    out = net(torch.randn(3, C), torch.tensor([0, 10, 999]), torch.randn(3, DIM))
    assert out.abs().max() == 0


def test_sampling_draws_each_token_from_the_diffusion_head_given_its_z():
    prior, diffloss = models(num_steps=20)
    c = torch.tensor([0, 2])
    a = sample(prior, diffloss, c, token_dim=C, generator=torch.Generator().manual_seed(8))
    b = sample(prior, diffloss, c, token_dim=C, generator=torch.Generator().manual_seed(8))
    assert a.shape == (2, N, C) and torch.equal(a, b)
    # the first token is exactly the DDPM sample of the head from z_0 with the same noise
    z0 = prior(torch.zeros(2, 0, C), c)[:, -1]
    first = diffloss.sample(z0, token_dim=C, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a[:, 0], first)
    other = diffloss.sample(torch.randn_like(z0), token_dim=C, generator=torch.Generator().manual_seed(8))
    assert (other - first).abs().max() > 1e-4


def test_too_many_tokens_are_refused():
    prior, _ = models(randomise_head=False)
    with pytest.raises(ValueError, match="exceed"):
        prior(torch.zeros(1, N + 1, C), torch.tensor([0]))


# ----------------------------------------------------------------------------- the learned-variance loss


def learned(num_steps=50):
    torch.manual_seed(0)
    diffloss = DiffusionLoss(token_dim=C, cond_dim=DIM, width=24, depth=2, num_steps=num_steps, learn_sigma=True)
    for p in diffloss.net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return diffloss


def test_released_diffloss_head_outputs_twice_the_token_channels():
    assert learned().net.out.out_features == 2 * C
    assert DiffusionLoss(token_dim=C, cond_dim=DIM, width=8, depth=1).net.out.out_features == C


def test_learned_variance_loss_is_the_eps_mse_plus_the_vlb_term_computed_by_hand():
    """gaussian_diffusion.py training_losses (MSE, LEARNED_RANGE) on a small case, every quantity written out."""
    diffloss = learned()
    s = diffloss.schedule
    g = torch.Generator().manual_seed(1)
    x0, z = torch.randn(4, C, generator=g).clamp(-0.9, 0.9), torch.randn(4, DIM, generator=g)
    t, noise = torch.tensor([0, 1, 17, 49]), torch.randn(4, C, generator=g)
    loss = diffloss.per_token(x0, z, t, noise)
    b = s.betas.float()
    ab = torch.cumprod(1 - b, 0)
    ab_prev = torch.cat([torch.ones(1), ab[:-1]])
    x_t = ab[t, None].sqrt() * x0 + (1 - ab[t, None]).sqrt() * noise
    out = diffloss.net(x_t, t, z)
    eps, v = out[:, :C], out[:, C:]
    post_var = b * (1 - ab_prev) / (1 - ab)
    log_post = torch.cat([post_var[1:2], post_var[1:]]).log()  # the clipped log posterior variance
    log_var = (v + 1) / 2 * b.log()[t, None] + (1 - v) / 2 * log_post[t, None]
    x0_hat = (x_t - (1 - ab[t, None]).sqrt() * eps) / ab[t, None].sqrt()
    coef0, coeft = ab_prev.sqrt() * b / (1 - ab), (1 - b).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = coef0[t, None] * x0_hat + coeft[t, None] * x_t
    true_mean = coef0[t, None] * x0 + coeft[t, None] * x_t
    lv1 = log_post[t, None]
    kl = 0.5 * (-1 + log_var - lv1 + (lv1 - log_var).exp() + (true_mean - mean) ** 2 / log_var.exp())
    sd = (0.5 * log_var).exp()

    def phi(u):  # the tanh approximation of the normal CDF
        return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))

    nll = -(phi((x0 - mean + 1 / 255) / sd) - phi((x0 - mean - 1 / 255) / sd)).log()  # x0 inside (-0.999, 0.999)
    vb = torch.where(t == 0, nll.mean(-1), kl.mean(-1)) / math.log(2)
    expected = ((noise - eps) ** 2).mean(-1) + vb
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)
    assert (vb > 0).all()


def test_the_vlb_term_trains_only_the_variance_the_mean_learns_from_the_mse_alone():
    diffloss = learned()
    g = torch.Generator().manual_seed(2)
    x0, t, noise = torch.randn(5, C, generator=g), torch.tensor([0, 3, 10, 30, 49]), torch.randn(5, C, generator=g)
    out = torch.randn(5, 2 * C, generator=g, requires_grad=True)
    mse, vb = mar_module.hybrid_loss(diffloss.schedule, x0, t, noise, out)
    (g_vb,) = torch.autograd.grad(vb.sum(), out)
    assert g_vb[:, :C].abs().max() == 0 and g_vb[:, C:].abs().max() > 0  # frozen mean, learned variance
    (g_mse,) = torch.autograd.grad(mse.sum(), out)
    assert g_mse[:, C:].abs().max() == 0


def test_learned_variance_interpolates_log_beta_tilde_and_log_beta():
    s = learned().schedule
    t = torch.tensor([5, 20])
    lo = mar_module.learned_log_variance(s, t, -torch.ones(2, C))
    hi = mar_module.learned_log_variance(s, t, torch.ones(2, C))
    torch.testing.assert_close(hi, s.betas.log()[t, None].expand(2, C).float())
    torch.testing.assert_close(lo, s.posterior_variance.log()[t, None].expand(2, C).float())


def test_respacing_keeps_the_alpha_bars_at_the_kept_steps():
    s = learned(num_steps=1000).schedule
    use = mar_module.space_timesteps(1000, 100)
    assert len(use) == 100 and use[0] == 0 and use[-1] == 999
    r = mar_module.respaced(s, use)
    torch.testing.assert_close(r.alpha_bars, s.alpha_bars[use])


# ----------------------------------------------------------------------------- MAR proper


def test_masking_ratio_lies_in_its_support_and_has_the_truncated_normal_mean():
    g = torch.Generator().manual_seed(3)
    r = torch.tensor([mar_module.truncated_normal_ratio(generator=g) for _ in range(4000)])
    assert r.min() >= 0.7 and r.max() <= 1.0
    a = (0.7 - 1) / 0.25
    pdf = lambda u: math.exp(-u * u / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda u: 0.5 * (1 + math.erf(u / math.sqrt(2)))  # noqa: E731
    mean = 1 + 0.25 * (pdf(a) - pdf(0)) / (cdf(0) - cdf(a))  # truncated-normal mean on [0.7, 1]: 0.867
    assert abs(mean - 0.867) < 1e-3
    assert abs(float(r.mean()) - mean) < 3 * float(r.std()) / math.sqrt(len(r))


@pytest.mark.parametrize(("n", "steps"), [(256, 64), (256, 256), (16, 64), (6, 6)])
def test_cosine_unmasking_predicts_every_token_once_and_counts_sum_to_n(n, steps):
    remaining = mar_module.unmasking_schedule(n, steps)
    counts = [n - remaining[0]] + [a - b for a, b in zip(remaining, remaining[1:], strict=False)]
    assert sum(counts) == n and remaining[-1] == 0 and all(c >= 0 for c in counts)
    if steps <= n:
        assert all(c >= 1 for c in counts)  # at least one token per step
    # where the clamps are idle, what stays masked after step s is floor(N cos(pi/2 (s+1)/S))
    if (n, steps) == (256, 64):
        assert remaining[:3] == [255, 254, 253]  # early on the cosine rounds to 255: one token per step
        assert [remaining[k - 1] for k in (32, 48)] == [
            math.floor(256 * math.cos(math.pi / 2 * k / 64)) for k in (32, 48)
        ]


def masked_models():
    torch.manual_seed(0)
    prior = MaskedARPrior(
        token_dim=C, n_tokens=N, n_classes=3, dim=DIM, enc_layers=1, dec_layers=1, n_heads=2, buffer=2
    )
    return prior.eval()


def test_masked_prior_is_bidirectional_reads_every_known_token_and_no_unknown_one():
    prior, x = masked_models(), tokens(1).requires_grad_(True)
    mask = torch.tensor([[True, False, True, False, False, True]])
    z = prior(x, mask, torch.tensor([1]))
    w = torch.randn(DIM, generator=torch.Generator().manual_seed(5))  # a sum would vanish after the LayerNorm
    for i in range(N):
        (g,) = torch.autograd.grad((z[0, i] * w).sum(), x, retain_graph=True)
        per_token = g[0].abs().sum(-1)
        assert (per_token[~mask[0]] > 0).all(), i  # every known token, before and after i
        assert (per_token[mask[0]] == 0).all(), i  # an unknown token's value is never read


def test_masked_loss_is_the_diffusion_loss_of_the_masked_tokens_in_a_random_order():
    prior, diffloss = masked_models(), models()[1]
    x, c = tokens(), torch.tensor([0, 2])
    loss = mar_module.masked_mar_loss(prior, diffloss, x, c, batch_mul=2, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)  # the same draws: orders, ratio, then the diffusion's t and noise
    orders = torch.rand(2, N, generator=g).argsort(1)
    n_masked = math.ceil(N * mar_module.truncated_normal_ratio(generator=g))
    mask = torch.zeros(2, N, dtype=torch.bool).scatter(1, orders[:, :n_masked], True)
    z = prior(x, mask, c)
    expected = diffloss(x.reshape(-1, C), z.reshape(2 * N, -1), mask=mask.reshape(-1), batch_mul=2, generator=g)
    torch.testing.assert_close(loss, expected)
    assert 5 <= n_masked <= N  # ceil(6 r) with r in [0.7, 1]


def test_masked_sampler_fills_the_schedules_counts_in_reverse_generation_order():
    prior, diffloss = masked_models(), models(num_steps=5)[1]
    tokens_out, step = mar_module.masked_sample(
        prior, diffloss, torch.tensor([0, 1]), token_dim=C, num_iter=4, generator=torch.Generator().manual_seed(6)
    )
    remaining = mar_module.unmasking_schedule(N, 4)
    counts = [N - remaining[0]] + [a - b for a, b in zip(remaining, remaining[1:], strict=False)]
    for row in step:
        assert [int((row == s).sum()) for s in range(4)] == counts
    orders = torch.rand(2, N, generator=torch.Generator().manual_seed(6)).argsort(1)  # the sampler's first draw
    for b in range(2):
        assert torch.equal(step[b, orders[b]], step[b, orders[b]].sort(descending=True).values)
    assert (step >= 0).all() and tokens_out.abs().sum(-1).gt(0).all()


def test_respaced_sampler_over_all_steps_is_ddpm_ancestral_sampling_and_fewer_steps_differ():
    _, diffloss = models(num_steps=20)
    z = torch.randn(3, DIM, generator=torch.Generator().manual_seed(9))
    full = diffloss.sample(z, token_dim=C, generator=torch.Generator().manual_seed(10))
    loop = diffloss.sample(z, token_dim=C, num_sampling_steps=20, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(loop, full, rtol=1e-4, atol=1e-5)
    fewer = diffloss.sample(z, token_dim=C, num_sampling_steps=5, generator=torch.Generator().manual_seed(10))
    assert (fewer - full).abs().max() > 1e-3
    sampled = learned(num_steps=20).sample(z, token_dim=C, num_sampling_steps=5, generator=torch.Generator())
    assert sampled.shape == (3, C) and torch.isfinite(sampled).all()
