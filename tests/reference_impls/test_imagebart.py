"""Properties of ImageBART: each stage reads all of x_t and only the causal past of x_{t-1}."""

import torch

from reference_impls import discrete_diffusion as dd
from reference_impls import imagebart

K, N = 6, 8


def _model(stages=3, seed=0):
    torch.manual_seed(seed)
    return imagebart.ImageBART(K, N, torch.tensor([0.2, 0.5, 0.9])[:stages]).eval()


def test_stage_sees_the_whole_noisier_sequence():
    stage = _model().stages[0]
    g = torch.Generator().manual_seed(1)
    noisy, target = torch.randint(0, K, (1, N), generator=g), torch.randint(0, K, (1, N), generator=g)
    base = stage(noisy, target)
    for j in range(N):
        changed = noisy.clone()
        changed[0, j] = (changed[0, j] + 1) % K
        # even the first output position (no causal past at all) reacts to every x_t token
        assert not torch.allclose(base[0, 0], stage(changed, target)[0, 0], atol=1e-6), j


def test_stage_sees_only_its_own_causal_past():
    stage = _model().stages[1]
    g = torch.Generator().manual_seed(2)
    noisy, target = torch.randint(0, K, (1, N), generator=g), torch.randint(0, K, (1, N), generator=g)
    base = stage(noisy, target)
    for j in range(N):
        changed = target.clone()
        changed[0, j] = (changed[0, j] + 1) % K
        out = stage(noisy, changed)
        assert torch.allclose(base[0, : j + 1], out[0, : j + 1], atol=1e-6), j  # positions <= j never see x_{t-1}^j
        if j < N - 1:
            assert not torch.allclose(base[0, j + 1], out[0, j + 1], atol=1e-6), j  # position j + 1 does


def test_forward_chain_is_multinomial_diffusion_with_stage_rates():
    model = _model()
    assert torch.allclose(model.schedule.Q, dd.uniform_schedule(torch.tensor([0.2, 0.5, 0.9]), K).Q)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randint(0, K, (4000, N), generator=g)
    for t, beta in enumerate([0.2, 0.5, 0.9], start=1):
        x_prev, x_t = imagebart.corrupt_pair(model, x0, t, g)
        changed = (x_prev != x_t).float().mean().item()
        assert abs(changed - beta * (1 - 1 / K)) < 0.01, (t, changed)  # a redraw keeps the token w.p. 1 / K


def test_training_lowers_the_loss_and_sampling_runs_every_stage():
    _train_and_sample()


def _train_and_sample():
    model = _model(stages=2).train()
    g = torch.Generator().manual_seed(4)
    x0 = torch.arange(N).remainder(K).repeat(8, 1)  # one fixed token sequence
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = imagebart.loss(model, x0, g).item()
    for _ in range(15):
        opt.zero_grad()
        loss = imagebart.loss(model, x0, g)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    tokens, calls = imagebart.sample(model, 4, torch.Generator().manual_seed(5))
    assert calls == 2 * N  # N autoregressive decoder calls per stage
    assert (tokens == x0[:4]).float().mean() > 0.8  # the trained chain reproduces the data
