import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.rar import (
    RARPrior,
    guidance_schedule,
    permute,
    random_ratio,
    rar_loss,
    sample,
    sample_orders,
)
from reference_impls.var import AdaLNBeforeHead, AdaLNBlock

N, V = 9, 11


def tiny(**kw):
    torch.manual_seed(0)
    model = RARPrior(vocab_size=V, n_classes=4, n_tokens=N, dim=32, n_layers=2, n_heads=2, **kw).eval()
    if kw.get("adaln"):  # the modulation starts at zero (adaLN-Zero); give it random weights to test it
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (AdaLNBlock, AdaLNBeforeHead)):
                    for p in m.ada.parameters():
                        p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def tokens(b=2, seed=1):
    return torch.randint(0, V, (b, N), generator=torch.Generator().manual_seed(seed))


def test_ratio_is_one_before_annealing_linear_during_and_zero_after():
    kw = dict(anneal_start=125_000, anneal_end=187_500)  # rar.yaml
    assert random_ratio(0, **kw) == 1.0
    assert random_ratio(125_000, **kw) == 1.0
    assert random_ratio(156_250, **kw) == pytest.approx(0.5)
    assert random_ratio(187_500, **kw) == 0.0
    assert random_ratio(250_000, **kw) == 0.0


def test_at_annealing_end_every_order_is_raster():
    ratio = random_ratio(250_000, anneal_start=125_000, anneal_end=187_500)
    orders = sample_orders(64, N, ratio, torch.Generator().manual_seed(2))
    assert torch.equal(orders, torch.arange(N).expand(64, N))


def test_before_annealing_orders_are_permutations_and_almost_never_raster():
    orders = sample_orders(64, N, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(orders.sort(dim=1).values, torch.arange(N).expand(64, N))
    assert (orders != torch.arange(N)).any(dim=1).float().mean() > 0.95
    # r = 0.5: about half of the examples keep the raster order
    half = sample_orders(2000, N, 0.5, torch.Generator().manual_seed(4))
    assert abs((half == torch.arange(N)).all(dim=1).float().mean() - 0.5) < 0.05


@pytest.mark.parametrize("adaln", [False, True])
def test_permuted_prior_is_causal_under_its_order(adaln):
    """The prediction at step j depends on exactly the tokens at steps < j of the order."""
    model = tiny(adaln=adaln)
    x, c = tokens(1), torch.tensor([2])
    order = torch.tensor([[4, 0, 8, 2, 6, 1, 3, 7, 5]])
    step_of = order[0].argsort()  # raster position -> its step in the order
    base = model(x, c, order)
    for p in range(N):
        x2 = x.clone()
        x2[0, p] = (x2[0, p] + 5) % V
        changed = (model(x2, c, order) - base).abs().amax(dim=-1)[0] > 1e-6  # (N,) per step
        expected = torch.arange(N) > step_of[p]
        assert torch.equal(changed, expected), p


def test_target_aware_positions_tell_the_model_which_position_comes_next():
    x, c = tokens(1, seed=5), torch.tensor([1])
    a = torch.tensor([[3, 1, 4, 0, 5, 2, 6, 7, 8]])
    b = torch.tensor([[3, 1, 4, 8, 5, 2, 6, 7, 0]])  # same first three steps, different fourth target
    aware, blind = tiny(), tiny(target_aware=False)

    def diff(m):
        return (m(x, c, a)[0, 3] - m(x, c, b)[0, 3]).abs().max()

    assert diff(aware) > 1e-4
    assert diff(blind) == 0  # without them the prediction at step 3 cannot know where it goes


def test_loss_is_cross_entropy_of_the_tokens_in_the_drawn_order():
    model, x, c = tiny(), tokens(), torch.tensor([0, 3])
    g = torch.Generator().manual_seed(6)
    loss = rar_loss(model, x, c, ratio=1.0, p_uncond=0.0, generator=g)
    orders = sample_orders(2, N, 1.0, torch.Generator().manual_seed(6))  # the same draws
    logits = model(x, c, orders)
    expected = F.cross_entropy(logits.reshape(-1, V), permute(x, orders).reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_guidance_schedule_starts_neutral_and_rises_to_the_scale():
    assert guidance_schedule(0, 256, scale=16.0, power=2.75) == 1.0
    mid = guidance_schedule(128, 256, scale=16.0, power=2.75)
    assert mid == pytest.approx(1 + 15 * (1 - math.cos(math.pi * 0.5**2.75)) / 2)
    assert guidance_schedule(256, 256, scale=16.0, power=2.75) == pytest.approx(16.0)


@pytest.mark.parametrize("adaln", [False, True])
def test_raster_sampling_with_unit_guidance_and_the_prior_agree_step_by_step(adaln):
    model, c = tiny(adaln=adaln), torch.tensor([1, 2])
    out = sample(model, c, scale=1.0, temperature=1e-4, generator=torch.Generator().manual_seed(7))
    logits = model(out, c, torch.arange(N).expand(2, N))  # teacher-forced, raster
    assert torch.equal(out, logits.argmax(-1))


def test_adaln_modulation_is_per_position_from_the_class_plus_a_step_embedding():
    """rar.py: c_j = e_class + timesteps_embeddings[j]; zeroing the step table makes every position's
    modulation the same, which changes the output; at zero modulation weights neither matters."""
    model, x, c = tiny(adaln=True), tokens(1), torch.tensor([2])
    order = torch.arange(N)[None]
    base = model(x, c, order)
    with torch.no_grad():
        model.step_emb.zero_()
    assert (model(x, c, order) - base).abs().max() > 1e-4
    fresh = RARPrior(vocab_size=V, n_classes=4, n_tokens=N, dim=32, n_layers=2, n_heads=2, adaln=True)
    out = fresh(x, c, order)
    with torch.no_grad():
        fresh.step_emb.normal_()
    torch.testing.assert_close(fresh(x, c, order), out, rtol=0, atol=0)  # adaLN-Zero: the blocks are the identity
