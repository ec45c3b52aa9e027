import math
from itertools import pairwise

import torch

from reference_impls.maskgit import (
    MaskedTransformer,
    apply_mask,
    cosine_schedule,
    decode,
    generate,
    masked_count,
    masked_token_loss,
    schedule_counts,
    training_mask,
)

K, N = 16, 64


class CountingModel:
    """Wraps a MaskedTransformer and counts forward passes."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, tokens, step):
        self.calls += 1
        return self.model(tokens)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MaskedTransformer(K, N, dim=32, depth=1, n_heads=4).eval()


def test_cosine_schedule_runs_from_all_masked_to_none():
    assert cosine_schedule(0.0) == 1.0
    assert abs(cosine_schedule(1.0)) < 1e-12
    r = torch.linspace(0, 1, 11)
    g = cosine_schedule(r)
    assert torch.all(g[1:] < g[:-1])  # strictly decreasing


def test_schedule_counts_match_ceil_of_cosine_hand_computation():
    for n, steps in [(256, 8), (256, 12), (64, 8)]:
        # rounded to 9 decimals so cos(pi/3) * 256 counts as exactly 128
        expected = [math.ceil(round(math.cos(math.pi / 2 * t / steps) * n, 9)) for t in range(1, steps)] + [0]
        assert schedule_counts(n, steps) == expected


def test_number_masked_after_each_decoding_step_follows_the_schedule_exactly():
    model = CountingModel(tiny_model())
    tokens = torch.full((3, N), K, dtype=torch.long)
    unknown = torch.ones(3, N, dtype=torch.bool)
    history = []
    decode(model, tokens, unknown, K, steps=8, generator=torch.Generator().manual_seed(1), history=history)
    counts = [h.sum(dim=1).tolist() for h in history]
    assert counts == [[c] * 3 for c in schedule_counts(N, 8)]


def test_a_token_once_fixed_never_changes_and_unknown_set_only_shrinks():
    model = tiny_model()
    snapshots = []

    def fn(x, t):
        snapshots.append(x.clone())
        return model(x)

    tokens = torch.full((2, N), K, dtype=torch.long)
    unknown = torch.ones(2, N, dtype=torch.bool)
    out = decode(fn, tokens, unknown, K, steps=10, generator=torch.Generator().manual_seed(2))
    snapshots.append(out)
    for before, after in pairwise(snapshots):
        fixed = before != K
        assert torch.equal(after[fixed], before[fixed])  # fixed stays fixed, value unchanged
        assert (after == K).sum() <= (before == K).sum()


def test_after_T_steps_nothing_is_masked_and_exactly_T_forward_passes():
    for steps in (1, 8, 12):
        model = CountingModel(tiny_model())
        out = generate(model.model, 2, N, steps=steps, generator=torch.Generator().manual_seed(0))
        assert not torch.any(out == K) and out.max() < K
        tokens = torch.full((2, N), K, dtype=torch.long)
        decode(model, tokens, torch.ones(2, N, dtype=torch.bool), K, steps, torch.Generator().manual_seed(0))
        assert model.calls == steps


def test_given_tokens_are_kept_when_decoding_from_a_partial_canvas():
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    given = torch.randint(0, K, (2, N), generator=g)
    unknown = torch.zeros(2, N, dtype=torch.bool)
    unknown[:, N // 2 :] = True  # inpaint the second half
    out = decode(lambda x, t: model(x), given, unknown, K, steps=4, generator=g)
    assert torch.equal(out[:, : N // 2], given[:, : N // 2])


def test_most_confident_tokens_are_kept_without_choice_noise():
    # Logits that make position i more confident the larger i is; with no annealed noise the
    # first step must keep exactly the highest positions and re-mask the lowest.
    n, steps = 10, 2
    scale = torch.arange(n, dtype=torch.float)[None, :, None]  # (1, N, 1)
    base = torch.zeros(1, n, K)
    base[..., 0] = 1.0

    history = []

    def fn(x, t):
        return base * scale

    decode(
        fn,
        torch.full((1, n), K),
        torch.ones(1, n, dtype=torch.bool),
        K,
        steps,
        torch.Generator().manual_seed(0),
        temperature=1e-4,
        choice_temperature=0.0,
        history=history,
    )
    n1 = schedule_counts(n, steps)[0]
    assert torch.equal(history[0][0], torch.arange(n) < n1)


def test_training_mask_count_is_ceil_gamma_r_times_n():
    r = torch.tensor([0.0, 0.3, 0.5, 0.9])
    mask = training_mask(4, 100, torch.Generator().manual_seed(0), ratio=r)
    expected = [max(1, math.ceil(math.cos(math.pi / 2 * float(x)) * 100 - 1e-9)) for x in r]
    assert mask.sum(dim=1).tolist() == expected


def test_loss_is_zero_gradient_on_unmasked_positions():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, K, (2, N), generator=g)
    mask = training_mask(2, N, g)
    logits = model(apply_mask(tokens, mask, K)).detach().requires_grad_(True)
    masked_token_loss(logits, tokens, mask).backward()
    assert torch.all(logits.grad[~mask] == 0)
    assert torch.all(logits.grad[mask].abs().sum(-1) > 0)


def _agreement_with_confidence_order(choice_temperature: float, steps: int = 6, n: int = 12, batch: int = 400):
    """Per decoding step, the fraction of newly fixed tokens that are among the most confident unknown ones.

    Position i's only plausible code is 0 with log p = c_i, c_i spaced evenly from -6.5 to 0 (the
    other codes share the rest), and near-zero sampling temperature draws code 0 everywhere, so the
    confidence order is the position order.
    """
    k = 1024
    c = torch.linspace(-6.5, 0.0, n)  # (N,) log p(y_i = 0)
    logits = ((1 - c.exp()) / (k - 1)).log()[:, None].repeat(1, k)  # (N, K)
    logits[:, 0] = c
    history = []
    decode(
        lambda x, t: logits.expand(batch, n, k),
        torch.full((batch, n), k),
        torch.ones(batch, n, dtype=torch.bool),
        k,
        steps,
        torch.Generator().manual_seed(0),
        temperature=1e-4,
        choice_temperature=choice_temperature,
        history=history,
    )
    before, agreement = torch.ones(batch, n, dtype=torch.bool), []
    for after in history[:-1]:
        fixed = before & ~after  # (B, N) fixed at this step
        m = int(fixed[0].sum())
        rank_from_top = before.flip(1).cumsum(1).flip(1)  # 1 at the highest (most confident) unknown position
        best = before & (rank_from_top <= m)
        agreement.append(float((fixed & best).sum()) / (batch * m))
        before = after
    return agreement


def test_choice_noise_anneals_so_late_steps_follow_confidence_and_early_steps_explore():
    # c_i = log p(y_i) + tau (1 - t/T) g_i: the noise is largest at the first step and gone at the last.
    agreement = _agreement_with_confidence_order(choice_temperature=1.2)
    assert agreement[0] < 0.6  # step 1: noise of scale 1.0 often overrules confidence gaps of 0.6
    assert agreement[-1] > 0.9  # step T - 1: noise of scale 0.2 rarely does
    assert _agreement_with_confidence_order(choice_temperature=0.0) == [1.0] * 5


def test_cosine_schedule_on_tensors_is_cos_pi_r_over_2():
    r = torch.tensor([0.0, 1 / 3, 0.5, 0.8, 1.0], dtype=torch.float64)
    torch.testing.assert_close(cosine_schedule(r), torch.cos(math.pi / 2 * r))
    assert math.isclose(cosine_schedule(1 / 3), math.cos(math.pi / 6))


def test_masked_count_reads_the_end_of_the_schedule_as_zero_and_uses_the_given_gamma():
    assert masked_count(1.0, 10, gamma=lambda r: 0.5) == 0  # r = 1: nothing masked, whatever gamma(1)
    assert masked_count(0.5, 10, gamma=lambda r: 0.5) == 5

    def linear(r):
        return 1 - r

    assert schedule_counts(10, 5, gamma=linear) == [8, 6, 4, 2, 0]
    mask = training_mask(3, 100, torch.Generator().manual_seed(0), gamma=linear, ratio=torch.tensor([0.25, 0.5, 0.75]))
    assert mask.sum(dim=1).tolist() == [75, 50, 25]


def test_training_mask_keeps_exactly_one_target_at_the_end_of_the_schedule_and_follows_its_generator():
    for r in (0.9999, 1.0):  # ceil(gamma(r) N) is 1 or 0: one target either way
        assert int(training_mask(1, 100, ratio=torch.tensor([r])).sum()) == 1
    a = training_mask(4, 50, torch.Generator().manual_seed(3))
    torch.manual_seed(0)  # the global generator must not matter
    b = training_mask(4, 50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    c = training_mask(4, 50, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    assert len({int(n) for n in a.sum(dim=1)}) > 1  # r is drawn per example


def test_masked_token_loss_is_the_mean_cross_entropy_over_masked_positions():
    logits = torch.randn(2, 5, K, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, K, (2, 5), generator=torch.Generator().manual_seed(1))
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # (2, 5)
    one = torch.zeros(2, 5, dtype=torch.bool)
    one[1, 3] = True
    torch.testing.assert_close(masked_token_loss(logits, tokens, one), ce[1, 3])
    some = torch.rand(2, 5, generator=torch.Generator().manual_seed(2)) < 0.5
    torch.testing.assert_close(masked_token_loss(logits, tokens, some), ce[some].mean())


def test_class_conditional_generation_is_decoding_with_the_label_prefix_and_follows_its_generator():
    torch.manual_seed(0)
    model = MaskedTransformer(K, N, dim=32, depth=1, n_heads=4, num_classes=3).eval()
    labels = torch.tensor([0, 2])
    tokens = torch.randint(0, K + 1, (2, N))
    out = model(tokens, labels)
    assert out.shape == (2, N, K)
    assert not torch.allclose(out, model(tokens, torch.tensor([1, 1])))  # every row reads its label
    same = tokens.clone()
    same[:] = K  # all [MASK]: positions differ only through the position embedding
    m = model(same, labels)
    assert (m[:, 0] - m[:, 1]).abs().max() > 1e-4
    history = []
    got = generate(model, 2, N, steps=4, labels=labels, generator=torch.Generator().manual_seed(5), history=history)
    assert len(history) == 4  # keyword options reach decode
    want = decode(
        lambda x, t: model(x, labels),
        torch.full((2, N), K),
        torch.ones(2, N, dtype=torch.bool),
        K,
        4,
        torch.Generator().manual_seed(5),
    )
    assert torch.equal(got, want)
    assert not torch.equal(
        got, generate(model, 2, N, steps=4, labels=labels, generator=torch.Generator().manual_seed(6))
    )


def test_default_model_and_generation_follow_the_paper_sizes_of_the_module():
    torch.manual_seed(0)
    counting = CountingModel(MaskedTransformer(K, N).eval())  # default width 64, 4 heads
    generate(counting.model, 1, N, generator=torch.Generator().manual_seed(0))  # default T = 8 iterations
    forward = counting.model.forward
    counting.model.forward = lambda x, labels=None: (
        setattr(counting, "calls", counting.calls + 1),
        forward(x, labels),
    )[1]
    generate(counting.model, 1, N, generator=torch.Generator().manual_seed(0))
    assert counting.calls == 8


def test_default_model_is_two_blocks_of_width_64_with_std_0_02_position_embeddings():
    torch.manual_seed(0)
    model = MaskedTransformer(K, N)
    assert len(model.blocks) == 2 and model.blocks[0].attn.n_heads == 4 and model.head.in_features == 64
    pos = model.pos.detach()  # (N, 64): small beside the unit-variance token embeddings
    assert 0.018 < float(pos.std()) < 0.022 and float(pos.abs().max()) < 0.12  # 6 sigma
