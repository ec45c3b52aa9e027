import inspect

import pytest
import torch

import reference_impls.mar as mar_module
from reference_impls import ddpm
from reference_impls.mar import ContinuousARPrior, DenoiserMLP, DiffusionLoss, mar_loss, sample

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
