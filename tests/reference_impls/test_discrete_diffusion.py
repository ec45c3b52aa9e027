"""Properties of the shared discrete-diffusion module (D3PM, multinomial diffusion, VQ-Diffusion)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from reference_impls import discrete_diffusion as dd

K, T = 4, 8


def _families(k=K, steps=T):
    return {
        "uniform": dd.uniform_schedule(dd.multinomial_cosine_betas(steps), k),
        "absorbing": dd.absorbing_schedule(dd.absorbing_betas(steps), k),
        "mask_and_replace": dd.mask_and_replace_schedule(*dd.vq_diffusion_cumulative(steps), k),
    }


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_every_row_of_q_and_of_the_cumulative_product_sums_to_one(name):
    s = _families()[name]
    ones = torch.ones(T + 1, s.num_states, dtype=torch.float64)
    assert torch.allclose(s.Q.sum(-1), ones, atol=1e-12)
    assert torch.allclose(s.Qbar.sum(-1), ones, atol=1e-12)
    assert (s.Q >= 0).all() and (s.Qbar >= 0).all()


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_closed_form_cumulative_equals_the_explicit_matrix_product(name):
    s = _families()[name]
    explicit = torch.eye(s.num_states, dtype=torch.float64)
    for t in range(1, T + 1):
        explicit = explicit @ s.Q[t]  # Q_1 Q_2 ... Q_t by hand
        assert torch.allclose(s.Qbar[t], explicit, atol=1e-12), t


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_posterior_equals_bayes_rule_by_brute_force(name):
    s = _families()[name]
    S = s.num_states
    for t in range(2, T + 1):
        for x0, xt in itertools.product(range(K), range(S)):
            # Bayes: q(x_{t-1} = j | x_t, x_0) = q(x_t | j) q(j | x_0) / q(x_t | x_0), term by term
            joint = torch.tensor([s.Q[t][j, xt] * s.Qbar[t - 1][x0, j] for j in range(S)], dtype=torch.float64)
            if joint.sum() == 0:
                continue  # x_t unreachable from x_0
            want = joint / s.Qbar[t][x0, xt]
            got = dd.q_posterior(
                s, F.one_hot(torch.tensor([[x0]]), S).double(), torch.tensor([[xt]]), torch.tensor([t])
            )[0, 0]
            assert torch.allclose(got, want, atol=1e-10), (t, x0, xt)


def test_absorbing_chain_ends_with_every_token_masked():
    s = _families()["absorbing"]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (16, 10), generator=g)
    xT = dd.q_sample(s, x0, torch.full((16,), T), g)
    assert (xT == s.mask_index).all()
    # and a masked token never comes back: q(x_t | x_{t-1} = [MASK]) is one-hot on [MASK]
    assert torch.equal(s.Q[1:, K], F.one_hot(torch.full((T,), K), K + 1).double())


def test_multinomial_closed_form_equals_repeated_single_steps():
    s = _families()["uniform"]
    x0 = torch.tensor([[2]])
    probs = F.one_hot(x0, K).double()[0, 0]
    for t in range(1, T + 1):
        # one step of Cat((1 - beta_t) x + beta_t / K), applied to the whole distribution
        beta = dd.multinomial_cosine_betas(T)[t - 1]
        probs = (1 - beta) * probs + beta / K
        assert torch.allclose(dd.q_probs(s, x0, torch.tensor([t]))[0, 0], probs, atol=1e-12)


def test_multinomial_posterior_matches_hoogeboom_formula_and_is_normalised():
    s = _families()["uniform"]
    alphas = 1 - dd.multinomial_cosine_betas(T)
    alpha_bars = torch.cumprod(alphas, 0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, K, (5, 7), generator=g)
    for t in range(2, T + 1):
        tt = torch.full((5,), t)
        xt = dd.q_sample(s, x0, tt, g)
        x0_1h, xt_1h = F.one_hot(x0, K).double(), F.one_hot(xt, K).double()
        # theta_post propto [alpha_t x_t + (1 - alpha_t) / K] * [alpha_bar_{t-1} x_0 + (1 - alpha_bar_{t-1}) / K]
        a, ab = alphas[t - 1], alpha_bars[t - 2]
        theta = (a * xt_1h + (1 - a) / K) * (ab * x0_1h + (1 - ab) / K)
        theta = theta / theta.sum(-1, keepdim=True)
        got = dd.q_posterior(s, x0_1h, xt, tt)
        assert torch.allclose(got, theta, atol=1e-12)
        assert torch.allclose(got.sum(-1), torch.ones(5, 7, dtype=torch.float64))


def test_multinomial_x_T_is_uniform_whatever_x_0():
    s = _families()["uniform"]
    assert torch.allclose(s.Qbar[T], torch.full((K, K), 1 / K, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(s.prior(), torch.full((K,), 1 / K, dtype=torch.float64))


def test_vq_diffusion_rates_satisfy_alpha_plus_k_beta_plus_gamma_equals_one():
    s = _families()["mask_and_replace"]
    alpha, beta, gamma = dd.mask_and_replace_rates(s)
    assert torch.allclose(alpha + K * beta + gamma, torch.ones(T, dtype=torch.float64), atol=1e-12)
    assert (alpha >= 0).all() and (beta >= 0).all() and (gamma >= 0).all()
    # the cumulative rates follow Eq. 5: alpha_bar = prod alpha, 1 - gamma_bar = prod (1 - gamma)
    alpha_bars, gamma_bars = dd.vq_diffusion_cumulative(T)
    assert torch.allclose(torch.cumprod(alpha, 0), alpha_bars, atol=1e-12)
    assert torch.allclose(1 - torch.cumprod(1 - gamma, 0), gamma_bars, atol=1e-12)


def test_vq_diffusion_mask_is_absorbing_and_a_masked_token_stays_masked():
    s = _families()["mask_and_replace"]
    mask_row = F.one_hot(torch.tensor(K), K + 1).double()
    for t in range(1, T + 1):
        assert torch.equal(s.Q[t][K], mask_row) and torch.equal(s.Qbar[t][K], mask_row)
    x_prev = torch.full((2, 50), K)
    g = torch.Generator().manual_seed(2)
    x_next = dd.sample_categorical(dd.q_step_probs(s, x_prev, torch.full((2,), 3)), g)
    assert (x_next == K).all()


@pytest.mark.parametrize("weighting", ["d3pm", "mixture"])
@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_perfect_x0_predictor_makes_the_reverse_chain_return_x0(name, weighting):
    s = _families()[name]
    g = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, K, (3, 6), generator=g)
    calls = []

    def perfect(xt, t):
        calls.append(int(t[0]))
        return F.one_hot(x0, K).float() * 40.0  # (B, N, K) logits peaked on the truth

    out = dd.sample(perfect, s, tuple(x0.shape), g, weighting=weighting)
    assert torch.equal(out.tokens, x0)
    assert out.forward_passes == T and calls == list(range(T, 0, -1))


def test_mixture_weighting_equals_sum_over_x0_of_exact_posteriors():
    s = _families()["mask_and_replace"]
    g = torch.Generator().manual_seed(4)
    p = torch.rand(2, 3, K, generator=g, dtype=torch.float64)
    p = p / p.sum(-1, keepdim=True)
    xt = torch.tensor([[0, K, 2], [K, 1, 3]])
    t = torch.tensor([5, 2])
    got = dd.p_reverse_probs(s, dd.pad_to_states(p, K + 1), xt, t, "mixture")
    want = torch.zeros_like(got)
    for x0 in range(K):  # VQ-Diffusion's reverse step, term by term
        onehot = F.one_hot(torch.full_like(xt, x0), K + 1).double()
        want += p[..., x0 : x0 + 1] * dd.q_posterior(s, onehot, xt, t)
    assert torch.allclose(got, want, atol=1e-10)
    # the d3pm weighting differs: it also weights each x_0 by q(x_t | x_0)
    assert not torch.allclose(dd.p_reverse_probs(s, dd.pad_to_states(p, K + 1), xt, t, "d3pm"), want, atol=1e-4)


def test_vlb_term_vanishes_for_a_perfect_predictor_and_is_positive_otherwise():
    s = _families()["uniform"]
    g = torch.Generator().manual_seed(5)
    x0 = torch.randint(0, K, (4, 5), generator=g)
    t = torch.tensor([2, 4, 6, 8])
    xt = dd.q_sample(s, x0, t, g)
    perfect = F.one_hot(x0, K).double()
    assert torch.allclose(dd.vlb_terms(s, x0, xt, t, perfect), torch.zeros(4, dtype=torch.float64), atol=1e-9)
    flat = torch.full((4, 5, K), 1.0 / K, dtype=torch.float64)
    assert (dd.vlb_terms(s, x0, xt, t, flat) > 1e-3).all()


def test_hybrid_loss_is_the_vlb_term_plus_lambda_times_x0_cross_entropy_and_training_lowers_it():
    s = _families()["mask_and_replace"]
    torch.manual_seed(6)
    x0 = torch.randint(0, K, (8, 6))
    model = torch.nn.Embedding(K + 1, K)  # per-token x_0 logits from x_t

    def fn(xt, t):
        return model(xt)

    loss, vb, ce = dd.hybrid_loss(s, fn, x0, lam=0.5, generator=torch.Generator().manual_seed(0))
    # the same t ~ U{1..T} and x_t ~ q(x_t | x_0) by hand, from the same generator
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, T + 1, (8,), generator=g)
    xt = dd.q_sample(s, x0, t, g)
    log_p = F.log_softmax(model(xt), -1)  # (B, N, K)
    want_vb = dd.vlb_terms(s, x0, xt, t, dd.pad_to_states(log_p.exp(), K + 1)).mean() / 6  # per token
    want_ce = F.nll_loss(log_p.reshape(-1, K), x0.reshape(-1))
    torch.testing.assert_close(vb, want_vb.to(vb.dtype))
    torch.testing.assert_close(ce, want_ce)
    torch.testing.assert_close(loss, vb + 0.5 * ce)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    first = None
    for i in range(60):
        opt.zero_grad()
        step_loss = dd.hybrid_loss(s, fn, x0, lam=0.5, generator=torch.Generator().manual_seed(i))[0]
        step_loss.backward()
        opt.step()
        first = first if first is not None else float(step_loss.detach())
    after = (
        sum(
            float(dd.hybrid_loss(s, fn, x0, lam=0.5, generator=torch.Generator().manual_seed(1000 + i))[0].detach())
            for i in range(20)
        )
        / 20
    )
    assert after < 0.7 * first


# ----------------------------------------------------------------------------- closed forms vs dense oracle


def _dense_row_ops(s, x0_probs, xt, t):
    """The posterior and the mixture reverse step computed with the dense (T + 1, S, S) matrices."""
    Q, Qbar = s.Q, s.Qbar
    fact1 = Q[t][:, xt].T  # (N, S): column x_t of Q_t, one row per token (all tokens share t here)
    fact2 = x0_probs @ Qbar[t - 1]  # (N, S)
    post = fact1 * fact2
    post = post / post.sum(-1, keepdim=True)
    w = x0_probs / Qbar[t][:, xt].T.clamp_min(1e-30)  # p~(x_0) / q(x_t | x_0)
    mix = fact1 * (w @ Qbar[t - 1])
    return post, mix / mix.sum(-1, keepdim=True)


def _big_families(k=37, steps=15):
    return _families(k, steps)


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_closed_form_rows_posterior_and_reverse_step_equal_the_dense_matrices(name):
    s = _big_families()[name]
    S, k, steps = s.num_states, s.num_classes, s.num_steps
    Q, Qbar = s.Q, s.Qbar
    torch.testing.assert_close(Qbar, dd.cumulative_product(Q), rtol=0, atol=1e-12)  # the closed-form Qbar_t
    g = torch.Generator().manual_seed(9)
    x0 = torch.randint(0, k, (1, 200), generator=g)
    xt_all = torch.randint(0, S, (1, 200), generator=g)  # includes [MASK] where there is one
    p = torch.rand(1, 200, S, generator=g, dtype=torch.float64)
    p = p / p.sum(-1, keepdim=True)  # also puts mass on [MASK]: the posterior must handle it
    for t in (1, 2, steps // 2, steps):
        tt = torch.tensor([t])
        torch.testing.assert_close(dd.q_probs(s, x0, tt)[0], Qbar[t][x0[0]], rtol=0, atol=1e-12)
        torch.testing.assert_close(dd.q_step_probs(s, xt_all, tt)[0], Q[t][xt_all[0]], rtol=0, atol=1e-12)
        post, mix = _dense_row_ops(s, p[0], xt_all[0], t)
        reachable = post.sum(-1) > 0
        torch.testing.assert_close(dd.q_posterior(s, p, xt_all, tt)[0][reachable], post[reachable], rtol=0, atol=1e-10)
        ok = mix.isfinite().all(-1)  # with mass on x_0 = [MASK], which a [MASK] x_t may have come from
        got = dd.p_reverse_probs(s, p, xt_all, tt, "mixture")[0]
        torch.testing.assert_close(got[ok], mix[ok], rtol=0, atol=1e-10)
        data_p = dd.pad_to_states(p[..., :k] / p[..., :k].sum(-1, keepdim=True), S)  # a model's p~ over K
        post_d, mix_d = _dense_row_ops(s, data_p[0], xt_all[0], t)
        ok = mix_d.isfinite().all(-1)
        got = dd.p_reverse_probs(s, data_p, xt_all, tt, "mixture")[0]
        torch.testing.assert_close(got[ok], mix_d[ok], rtol=0, atol=1e-10)
    torch.testing.assert_close(s.prior(), Qbar[steps, :k].mean(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("weighting", ["d3pm", "mixture"])
@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_gradients_through_the_closed_form_reverse_step_equal_those_of_the_dense_matrices(name, weighting):
    # the closed forms work in place where autograd allows it; the gradient must not notice
    s = _big_families(k=9, steps=6)[name]
    S, k = s.num_states, s.num_classes
    g = torch.Generator().manual_seed(4)
    xt = torch.randint(0, S, (1, 40), generator=g)
    logits = torch.randn(1, 40, k, generator=g, dtype=torch.float64)
    weights = torch.randn(1, 40, S, generator=g, dtype=torch.float64)  # a random linear read-out
    for t in (1, 3, 6):
        leaf = logits.clone().requires_grad_(True)
        p = dd.pad_to_states(leaf.softmax(-1), S)
        (dd.p_reverse_probs(s, p, xt, torch.tensor([t]), weighting) * weights).sum().backward()
        closed = leaf.grad

        leaf = logits.clone().requires_grad_(True)
        post, mix = _dense_row_ops(s, dd.pad_to_states(leaf.softmax(-1), S)[0], xt[0], t)
        dense = post if weighting == "d3pm" else mix
        ok = dense.isfinite().all(-1) & (dense.sum(-1) > 0)
        (dense[ok] * weights[0][ok]).sum().backward()
        torch.testing.assert_close(closed[0][ok], leaf.grad[0][ok], rtol=1e-9, atol=1e-12)


def test_vq_diffusion_schedule_at_its_paper_size_holds_rates_not_matrices():
    # 2,886 codes + [MASK], T = 100 (papers/gu2022vector.md): dense Q and Qbar would be 6.7 GB each.
    s = dd.mask_and_replace_schedule(*dd.vq_diffusion_cumulative(100), 2886)
    held = sum(v.numel() for v in vars(s).values() if isinstance(v, torch.Tensor))
    assert held == 6 * 101
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 2886, (1, 1024), generator=g)
    xt = dd.q_sample(s, x0, torch.tensor([60]), g)
    post = dd.q_posterior(s, F.one_hot(x0, 2887).double(), xt, torch.tensor([60]))  # (1, 1024, 2887)
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 1024, dtype=torch.float64))
    # a [MASK] at t was already [MASK] at t - 1 with probability gamma_bar_{t-1} / gamma_bar_t
    masked = xt[0] == 2886
    want = float(s.to_mask_bar[59] / s.to_mask_bar[60])
    assert masked.any()
    torch.testing.assert_close(post[0, masked, 2886], torch.full((int(masked.sum()),), want, dtype=torch.float64))


# ----------------------------------------------------------------------------- precision, defaults, losses by hand


def _from_float32(name):
    """A family built from float32 inputs and the same family built from those values in float64."""
    if name == "mask_and_replace":
        ab, gb = (v.float() for v in dd.vq_diffusion_cumulative(T))
        return dd.mask_and_replace_schedule(ab, gb, K), dd.mask_and_replace_schedule(ab.double(), gb.double(), K)
    build, betas = {
        "uniform": (dd.uniform_schedule, dd.multinomial_cosine_betas(T)),
        "absorbing": (dd.absorbing_schedule, dd.absorbing_betas(T)),
    }[name]
    return build(betas.float(), K), build(betas.float().double(), K)


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_schedule_rates_are_computed_in_float64_whatever_the_input_dtype(name):
    got, want = _from_float32(name)
    for field in ("keep", "spread", "to_mask", "keep_bar", "spread_bar", "to_mask_bar"):
        assert getattr(got, field).dtype == torch.float64, field
        assert torch.equal(getattr(got, field), getattr(want, field)), field  # no float32 rounding on the way


def test_absorbing_schedule_has_masked_exactly_t_over_T_of_the_tokens_at_step_t():
    # beta_t = 1 / (T - t + 1) telescopes: alpha_bar_t = prod_{s <= t} (T - s) / (T - s + 1) = (T - t) / T
    for steps in (T, 7, 100):
        betas = dd.absorbing_betas(steps)
        s = dd.absorbing_schedule(betas, K)
        t = torch.arange(steps + 1, dtype=torch.float64)
        torch.testing.assert_close(s.to_mask_bar, t / steps, rtol=0, atol=1e-15)
        torch.testing.assert_close(s.keep_bar, 1 - t / steps, rtol=0, atol=1e-15)
        torch.testing.assert_close(betas, 1 / (steps - t[1:] + 1), rtol=0, atol=0)
        assert betas[-1] == 1.0  # the last step masks every token left


@pytest.mark.parametrize("steps", [1, 2, 3, 100])
def test_vq_diffusion_cumulative_runs_linearly_between_the_released_endpoints(steps):
    # microsoft/VQ-Diffusion alpha_schedule: att_1 = 0.99999, att_T = 0.000009, ctt_1 = 0.000009, ctt_T = 0.99999
    ab, gb = dd.vq_diffusion_cumulative(steps)
    assert ab.shape == gb.shape == (steps,)
    torch.testing.assert_close(ab[0], torch.tensor(0.99999, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(gb[0], torch.tensor(0.000009, dtype=torch.float64), rtol=0, atol=1e-15)
    if steps > 1:  # one step has only the first value (the released code divides by T - 1 = 0 there)
        torch.testing.assert_close(ab[-1], torch.tensor(0.000009, dtype=torch.float64), rtol=0, atol=1e-15)
        torch.testing.assert_close(gb[-1], torch.tensor(0.99999, dtype=torch.float64), rtol=0, atol=1e-15)
        step_a, step_g = (0.000009 - 0.99999) / (steps - 1), (0.99999 - 0.000009) / (steps - 1)
        torch.testing.assert_close(ab.diff(), torch.full((steps - 1,), step_a, dtype=torch.float64), rtol=0, atol=1e-15)
        torch.testing.assert_close(gb.diff(), torch.full((steps - 1,), step_g, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["uniform", "absorbing", "mask_and_replace"])
def test_posterior_and_reverse_step_of_float32_model_probabilities_are_computed_in_float64(name):
    # model_x0_probs hands over float32 probabilities; summing them in float32 would round the [MASK] mass
    s = _big_families()[name]
    S, k = s.num_states, s.num_classes
    g = torch.Generator().manual_seed(11)
    p = torch.rand(2, 50, k, generator=g).softmax(-1)  # (B, N, K) float32
    p32 = dd.pad_to_states(p, S)
    xt = torch.randint(0, S, (2, 50), generator=g)
    t = torch.tensor([2, s.num_steps])
    for weighting in ("d3pm", "mixture"):
        got = dd.p_reverse_probs(s, p32, xt, t, weighting)
        assert got.dtype == torch.float64
        assert torch.equal(got, dd.p_reverse_probs(s, p32.double(), xt, t, weighting)), weighting


def test_p_reverse_probs_defaults_to_vq_diffusion_mixture_and_rejects_an_unknown_weighting():
    s = _families()["mask_and_replace"]
    g = torch.Generator().manual_seed(12)
    p = dd.pad_to_states(torch.rand(2, 3, K, generator=g, dtype=torch.float64).softmax(-1), K + 1)
    xt, t = torch.tensor([[0, K, 2], [K, 1, 3]]), torch.tensor([5, 2])
    assert torch.equal(dd.p_reverse_probs(s, p, xt, t), dd.p_reverse_probs(s, p, xt, t, "mixture"))
    with pytest.raises(ValueError, match="unknown weighting 'ddpm'"):
        dd.p_reverse_probs(s, p, xt, t, "ddpm")


@pytest.mark.parametrize("weighting", ["d3pm", "mixture"])
def test_vlb_terms_sum_the_kl_to_the_reverse_step_and_the_nll_of_x0_at_t_equals_one(weighting):
    s = _families()["mask_and_replace"]
    S = s.num_states
    g = torch.Generator().manual_seed(13)
    x0 = torch.randint(0, K, (4, 5), generator=g)
    t = torch.tensor([1, 3, 1, T])
    xt = dd.q_sample(s, x0, t, g)
    p = dd.pad_to_states(torch.rand(4, 5, K, generator=g, dtype=torch.float64).softmax(-1), S)
    want = torch.zeros(4, dtype=torch.float64)
    for b in range(4):  # by hand with the dense matrices, one example at a time
        post, mix = _dense_row_ops(s, p[b], xt[b], int(t[b]))
        target, _ = _dense_row_ops(s, F.one_hot(x0[b], S).double(), xt[b], int(t[b]))
        pred = post if weighting == "d3pm" else mix
        if t[b] == 1:  # L_0 = -log p(x_0 | x_1), summed over the 5 positions
            want[b] = -pred.gather(-1, x0[b, :, None]).log().sum()
        else:  # L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), 0 log 0 = 0
            want[b] = torch.where(target > 0, target * (target.clamp_min(1e-30).log() - pred.log()), 0.0).sum()
    got = dd.vlb_terms(s, x0, xt, t, p, weighting)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert (got > 0).all()


def test_hybrid_loss_defaults_to_lambda_one_hundredth():
    s = _families()["uniform"]
    g = torch.Generator().manual_seed(14)
    x0 = torch.randint(0, K, (3, 4), generator=g)
    logits = torch.randn(3, 4, K, generator=g)

    def model(xt, t):
        return logits

    loss, vb, ce = dd.hybrid_loss(s, model, x0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, vb + 0.01 * ce)
    assert ce > 0.1  # so the weight of ce shows in the loss


def test_hybrid_loss_calls_the_model_at_the_sampled_time_and_uses_the_chosen_weighting():
    s = _families()["mask_and_replace"]
    g = torch.Generator().manual_seed(15)
    x0 = torch.randint(0, K, (5, 6), generator=g)
    table = torch.randn(T + 1, K + 1, K, generator=g)  # x_0 logits that depend on t and x_t
    seen = []

    def model(xt, t):
        seen.append(t)
        return table[t[:, None], xt]  # (B, N, K)

    _, vb, _ = dd.hybrid_loss(s, model, x0, weighting="d3pm", generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, T + 1, (5,), generator=g)
    xt = dd.q_sample(s, x0, t, g)
    assert len(seen) == 1 and torch.equal(seen[0], t)
    p = dd.pad_to_states(F.softmax(table[t[:, None], xt], -1), K + 1)
    want = {w: dd.vlb_terms(s, x0, xt, t, p, w).mean() / 6 for w in ("d3pm", "mixture")}
    torch.testing.assert_close(vb, want["d3pm"].to(vb.dtype))
    assert not torch.allclose(want["d3pm"], want["mixture"], rtol=1e-3)


def test_hybrid_loss_of_a_single_sequence_averages_over_its_tokens():
    s = _families()["absorbing"]
    x0 = torch.tensor([[0, 3, 1, 2, 2, 1, 0]])  # a batch of one

    def model(xt, t):
        return torch.zeros(*xt.shape, K)  # uniform p~(x_0 | x_t)

    loss, vb, ce = dd.hybrid_loss(s, model, x0, lam=0.5, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(1, T + 1, (1,), generator=g)
    xt = dd.q_sample(s, x0, t, g)
    flat = torch.full((1, 7, K + 1), 1 / K, dtype=torch.float64)
    flat[..., K] = 0
    torch.testing.assert_close(vb, (dd.vlb_terms(s, x0, xt, t, flat) / 7).to(vb.dtype)[0])
    torch.testing.assert_close(ce, torch.tensor(float(torch.log(torch.tensor(K)))))
    torch.testing.assert_close(loss, vb + 0.5 * ce)
