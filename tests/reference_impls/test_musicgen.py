import pytest
import torch

from reference_impls.musicgen import (
    InterleavedLM,
    build_sequence,
    coarse_first_pattern,
    delay_pattern,
    flattened_pattern,
    parallel_pattern,
    revert_sequence,
    valid_mask,
)

K, T, V = 4, 6, 10
SP = V  # the special token


def _codes(b=2, seed=0):
    return torch.randint(0, V, (b, K, T), generator=torch.Generator().manual_seed(seed))


def test_delay_pattern_reverses_exactly_and_places_code_q_d_q_steps_late():
    codes = _codes()
    for delays in ([0, 1, 2, 3], [0, 0, 2, 5], [0, 2, 2, 2]):
        p = delay_pattern(T, delays)
        seq = build_sequence(codes, p, SP)
        assert torch.equal(revert_sequence(seq, p), codes)
        for q, d in enumerate(delays):
            assert torch.equal(seq[:, q, d : d + T], codes[:, q])  # stream q shifted by d_q
            assert (seq[:, q, :d] == SP).all() and (seq[:, q, d + T :] == SP).all()
    # the hand example of audiocraft's DelayedPatternProvider docstring (T = 4, K = 3)
    z = torch.tensor([[[1, 2, 3, 4]] * 3])
    seq = build_sequence(z, delay_pattern(4, [0, 1, 2]), 0)
    assert seq.tolist() == [[[1, 2, 3, 4, 0, 0], [0, 1, 2, 3, 4, 0], [0, 0, 1, 2, 3, 4]]]


def test_every_pattern_round_trips():
    codes = _codes()
    for p in (
        parallel_pattern(T, K),
        flattened_pattern(T, K),
        coarse_first_pattern(T, K),
        delay_pattern(T, [0, 1, 2, 3]),
    ):
        assert torch.equal(revert_sequence(build_sequence(codes, p, SP), p), codes)
        assert int(valid_mask(p).sum()) == K * T  # each code placed exactly once


def test_number_of_steps_per_pattern():
    assert parallel_pattern(T, K).num_steps == T
    assert delay_pattern(T, [0, 1, 2, 3]).num_steps == T + K - 1
    assert flattened_pattern(T, K).num_steps == K * T
    assert coarse_first_pattern(T, K).num_steps == 2 * T
    # MusicGen's tokenizer: 50 frames per second, delays [0, 1, 2, 3] -> 50 steps per second plus 3 once
    assert delay_pattern(50 * 30, [0, 1, 2, 3]).num_steps == 50 * 30 + 3


def test_delay_lets_level_q_condition_on_level_q_minus_1_of_the_same_frame():
    delay = delay_pattern(T, [0, 1, 2, 3]).step_of()
    par = parallel_pattern(T, K).step_of()
    flat = flattened_pattern(T, K).step_of()
    for q in range(1, K):
        assert (delay[q] == delay[q - 1] + 1).all()  # one step after the coarser level
        assert (par[q] == par[q - 1]).all()  # same step: predicted independently
        assert (flat[q] > flat[q - 1]).all()


def _model(seed=0):
    torch.manual_seed(seed)
    return InterleavedLM(codebooks=K, vocab=V, dim=16, depth=2).eval()


def test_lm_prediction_at_a_step_reads_only_earlier_steps():
    model = _model()
    p = delay_pattern(T, [0, 1, 2, 3])
    seq = build_sequence(_codes(), p, SP)
    logits = model(seq)
    s = 4
    changed = seq.clone()
    changed[:, :, s:] = (changed[:, :, s:] + 1) % V  # every token at steps >= s
    after = model(changed)
    assert torch.allclose(after[:, :, : s + 1], logits[:, :, : s + 1], atol=1e-6)  # step s itself too
    assert not torch.allclose(after[:, :, s + 1], logits[:, :, s + 1])


def test_under_delay_the_code_of_level_q_is_predicted_from_level_q_minus_1_but_not_under_parallel():
    model = _model()
    codes = _codes(b=1)
    t, q = 2, 2
    bumped = codes.clone()
    bumped[0, q - 1, t] = (bumped[0, q - 1, t] + 1) % V
    for pattern, sees in ((delay_pattern(T, [0, 1, 2, 3]), True), (parallel_pattern(T, K), False)):
        s = int(pattern.step_of()[q, t])
        a = model(build_sequence(codes, pattern, SP))[0, q, s]
        b = model(build_sequence(bumped, pattern, SP))[0, q, s]
        assert (not torch.allclose(a, b)) == sees


def test_loss_counts_only_real_codes_and_trains():
    model = _model().train()
    p = delay_pattern(T, [0, 1, 2, 3])
    codes = _codes()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(codes, p)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5


def test_mismatched_codes_and_bad_delays_are_refused():
    with pytest.raises(ValueError, match="the pattern expects"):
        build_sequence(_codes(), delay_pattern(T + 1, [0, 1, 2, 3]), SP)
    with pytest.raises(ValueError, match="must start at 0"):
        delay_pattern(T, [1, 2, 3, 4])
