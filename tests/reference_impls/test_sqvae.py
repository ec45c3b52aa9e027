"""SQ-VAE (Takida et al. 2022): as s shrinks the stochastic quantiser becomes nearest-neighbour VQ;
the latent and reconstruction terms equal their closed forms on hand examples; the variance is
learned and anneals itself on a toy where reconstruction rewards it."""

import math

import torch

from reference_impls.gumbel import sample_gumbel
from reference_impls.sqvae import GaussianSQ, gumbel_temperature, reconstruction_loss, sq_logits
from reference_impls.vq import nearest_code


def _sq_with_variance(codebook: torch.Tensor, var: float) -> GaussianSQ:
    sq = GaussianSQ(codebook.shape[0], codebook.shape[1], var_floor=0.0, log_var_init=math.log(var))
    with torch.no_grad():
        sq.codebook.copy_(codebook)
    return sq


def test_as_s_shrinks_the_categorical_tends_to_nearest_neighbour_vq():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(300, 4, generator=g), torch.randn(16, 4, generator=g)
    nearest = nearest_code(z, codebook)  # vq.py's Eq. 1
    p_nearest = []
    for var in [10.0, 1.0, 0.1, 1e-2, 1e-3, 1e-5]:
        logits = sq_logits(z, codebook, var)
        assert torch.equal(logits.argmax(dim=1), nearest)  # the mode is VQ's code at every s
        p_nearest.append(logits.softmax(dim=1).gather(1, nearest[:, None]).squeeze(1))
    p = torch.stack(p_nearest)  # (S, N)
    assert bool((p[1:] >= p[:-1] - 1e-6).all())  # rises as s shrinks, row by row
    assert p[0].mean() < 0.5 and p[-1].min() > 0.999


def test_relaxed_training_sample_tends_to_the_nearest_code_as_s_shrinks():
    g = torch.Generator().manual_seed(1)
    z, codebook = torch.randn(2, 3, 50, generator=g), torch.randn(8, 3, generator=g)
    rows = z.movedim(1, -1).reshape(-1, 3)
    target = codebook[nearest_code(rows, codebook)]  # (N, D)
    gaps = []
    for var in [10.0, 1e-4]:
        out = _sq_with_variance(codebook, var).train()(z, tau=1.0, generator=torch.Generator().manual_seed(2))
        gaps.append((out.z_q.movedim(1, -1).reshape(-1, 3) - target).abs().max().item())
    assert gaps[0] > 0.5 and gaps[1] < 1e-3


def test_latent_terms_equal_their_closed_forms_on_a_hand_example():
    # One image, two positions, codes b = (0, 2) in one dimension, s^2 = 0.5:
    # position 1, zhat = 0.5: distances (0.25, 2.25), logits (-0.25, -2.25), P = (1, e^-2) / (1 + e^-2)
    # position 2, zhat = 1.8: distances (3.24, 0.04), logits (-3.24, -0.04), P = (e^-3.2, 1) / (1 + e^-3.2)
    # deterministic quantisation picks b = 0 and b = 2: continuous term 0.5^2 / 1 + 0.2^2 / 1 = 0.29.
    sq = _sq_with_variance(torch.tensor([[0.0], [2.0]]), 0.5).eval()
    zhat = torch.tensor([[[0.5, 1.8]]])  # (B=1, D=1, S=2)
    out = sq(zhat)
    p1 = [1 / (1 + math.exp(-2)), math.exp(-2) / (1 + math.exp(-2))]
    p2 = [math.exp(-3.2) / (1 + math.exp(-3.2)), 1 / (1 + math.exp(-3.2))]
    neg_entropy = sum(p * math.log(p) for p in p1 + p2)
    torch.testing.assert_close(out.probs, torch.tensor([p1, p2]))
    assert out.indices.tolist() == [[0, 1]]
    torch.testing.assert_close(out.kl_discrete, torch.tensor(neg_entropy))
    torch.testing.assert_close(out.kl_continuous, torch.tensor(0.29))
    torch.testing.assert_close(out.loss, torch.tensor(neg_entropy + 0.29))
    # the discrete term is KL(P || uniform) minus log K at each position
    uniform = torch.distributions.Categorical(probs=torch.full((2, 2), 0.5))
    kl = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=out.probs), uniform).sum()
    torch.testing.assert_close(out.kl_discrete, kl - 2 * math.log(2))
    # two copies of the image: both terms are per image, so they do not change
    twice = sq(zhat.repeat(2, 1, 1))
    torch.testing.assert_close(twice.loss, out.loss)


def test_training_quantises_to_the_gumbel_softmax_mixture_of_codes():
    # training: z = sum_k y_k b_k with y = softmax((l + g) / tau), and the continuous term uses that z.
    codebook = torch.tensor([[0.0], [2.0]])
    sq = _sq_with_variance(codebook, 0.5).train()
    zhat = torch.tensor([[[0.5, 1.8]]])
    out = sq(zhat, tau=0.7, generator=torch.Generator().manual_seed(3))
    g = sample_gumbel((2, 2), torch.Generator().manual_seed(3))  # the same draws
    logits = torch.tensor([[-0.25, -2.25], [-3.24, -0.04]])
    y = ((logits + g) / 0.7).softmax(dim=1)
    z = y @ codebook  # (2, 1)
    torch.testing.assert_close(out.z_q.reshape(2, 1), z)
    torch.testing.assert_close(out.kl_continuous, ((torch.tensor([[0.5], [1.8]]) - z) ** 2).sum() / (2 * 0.5))


def test_reconstruction_terms_equal_their_closed_forms_and_arelbo_is_the_optimal_variance():
    # squared errors 0 + 1 + 4 + 9 = 14 over D_x = 4 values
    x, x_hat = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.ones(1, 4)
    torch.testing.assert_close(reconstruction_loss(x_hat, x), torch.tensor(2 * math.log(14)))
    log_var = torch.tensor(math.log(2.0))
    torch.testing.assert_close(reconstruction_loss(x_hat, x, log_var), torch.tensor(14 / 4 + 2 * math.log(2)))
    # at its optimum sigma^2 = mse / D_x = 3.5 the learned-variance loss is ARELBO + D_x / 2 (1 - log D_x)
    best = reconstruction_loss(x_hat, x, torch.tensor(math.log(3.5)))
    torch.testing.assert_close(best, reconstruction_loss(x_hat, x) + 2 * (1 - math.log(4)))
    # the official code takes the log of the batch's mean squared error per image, not a mean of logs
    x2, x_hat2 = torch.cat([x, x]), torch.cat([x_hat, x])  # errors 14 and 0
    torch.testing.assert_close(reconstruction_loss(x_hat2, x2), torch.tensor(2 * math.log(7)))


def test_variance_is_one_plus_a_learned_exponential_and_starts_at_twenty_one():
    sq = GaussianSQ(8, 2).train()
    assert math.isclose(sq.variance().item(), 21.0, rel_tol=1e-6)  # exp(0) + exp(log 20), configs/cifar10_gauss_1.yaml
    out = sq(torch.randn(4, 2, 3), generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert sq.log_param.grad is not None and sq.log_param.grad != 0
    assert gumbel_temperature(0) == 1.0 and math.isclose(gumbel_temperature(100_000), math.exp(-1))


def test_variance_shrinks_by_itself_when_reconstruction_rewards_it():
    # Four clusters, an identity encoder and a decoder that repeats z 16 times (D_x = 32): nothing
    # schedules s^2, yet training the ELBO takes it from 21 to near its floor of 1 while the codes
    # spread over the clusters.
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])
    sq = GaussianSQ(8, 2, generator=torch.Generator().manual_seed(1)).train()
    opt = torch.optim.Adam(sq.parameters(), lr=0.05)
    for _ in range(150):
        x = (centres[torch.randint(0, 4, (64,), generator=g)] + 0.3 * torch.randn(64, 2, generator=g))[:, :, None]
        out = sq(x, tau=1.0, generator=g)
        loss = reconstruction_loss(out.z_q.repeat(1, 16, 1), x.repeat(1, 16, 1)) + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sq.variance().item() < 2.0
    assert float(out.perplexity) > 4.0
