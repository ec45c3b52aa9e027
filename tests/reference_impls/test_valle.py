import pytest
import torch

from reference_impls.valle import ValleAR, ValleNAR, generate

P, K, Q = 7, 9, 4  # phonemes, codes per level, levels
L, TP, T = 5, 3, 6  # phoneme, prompt and target lengths


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, P, (2, L), generator=g),
        torch.randint(0, K, (2, TP, Q), generator=g),
        torch.randint(0, K, (2, T, Q), generator=g),
    )


def _ar(seed=0):
    torch.manual_seed(seed)
    return ValleAR(num_phonemes=P, codebook_size=K, dim=16).eval()


def _nar(seed=0):
    torch.manual_seed(seed)
    return ValleNAR(num_phonemes=P, codebook_size=K, levels=Q, dim=16).eval()


def test_ar_stage_sees_only_earlier_frames_of_the_first_level():
    ar = _ar()
    x, prompt, target = _data()
    base = ar.logits(x, prompt[..., 0], target[..., 0])  # (B, T + 1, V): row t predicts frame t
    t = 3
    later = target.clone()
    later[:, t:, 0] = (later[:, t:, 0] + 1) % K
    changed = ar.logits(x, prompt[..., 0], later[..., 0])
    assert torch.allclose(changed[:, : t + 1], base[:, : t + 1], atol=1e-6)  # frames <= t unaffected
    assert not torch.allclose(changed[:, t + 1], base[:, t + 1])  # frame t + 1 reads frame t
    # ... and it reads every phoneme and the prompt's first level from the first frame on, never other levels
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % P
    assert not torch.allclose(ar.logits(x2, prompt[..., 0], target[..., 0])[:, 0], base[:, 0])
    p2 = prompt.clone()
    p2[..., 0] = (p2[..., 0] + 1) % K
    assert not torch.allclose(ar.logits(x, p2[..., 0], target[..., 0])[:, 0], base[:, 0])


def test_ar_loss_is_cross_entropy_on_target_codes_and_eos_only():
    ar = _ar()
    x, prompt, target = _data()
    logits = ar.logits(x, prompt[..., 0], target[..., 0])
    labels = torch.cat([target[..., 0] + P, torch.full((2, 1), ar.eos)], dim=1)
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    assert torch.allclose(ar.loss(x, prompt[..., 0], target[..., 0]), manual)


def test_nar_stage_predicts_level_k_from_levels_below_k():
    nar = _nar()
    x, prompt, target = _data()
    for k in range(1, Q):
        base = nar(x, prompt, target, k)
        upper = target.clone()
        upper[..., k:] = (upper[..., k:] + 1) % K  # level k itself and every level above it
        assert torch.allclose(nar(x, prompt, upper, k), base, atol=1e-6)
        lower = target.clone()
        lower[:, -1, k - 1] = (lower[:, -1, k - 1] + 1) % K  # one code of the level just below, last frame
        out = nar(x, prompt, lower, k)
        assert not torch.allclose(out[:, 0], base[:, 0])  # non-causal: frame 0 reads the last frame


def test_nar_reads_every_level_of_the_acoustic_prompt_and_the_phonemes():
    nar = _nar()
    x, prompt, target = _data()
    base = nar(x, prompt, target, 1)
    p2 = prompt.clone()
    p2[..., Q - 1] = (p2[..., Q - 1] + 1) % K  # the prompt's finest level
    assert not torch.allclose(nar(x, p2, target, 1), base)
    x2 = (x + 1) % P
    assert not torch.allclose(nar(x2, prompt, target, 1), base)


def test_generation_draws_level_1_by_the_ar_and_fills_q_minus_1_levels_by_nar_passes():
    ar, nar = _ar(), _nar()
    x, prompt, _ = _data()
    calls = []
    nar.register_forward_hook(lambda m, args, out: calls.append(args[3]))
    codes = generate(ar, nar, x, prompt, T, generator=torch.Generator().manual_seed(3))
    assert codes.shape == (2, T, Q) and calls == list(range(1, Q))
    assert ((codes >= 0) & (codes < K)).all()
    # level 1 is the AR sample; every later level is the NAR's greedy choice given the levels below
    for k in range(1, Q):
        assert torch.equal(codes[..., k], nar(x, prompt, codes, k).argmax(-1))


def _forcing(ar, token):
    """A hook that makes `token` overwhelmingly likely at every position of the AR head."""
    bias = torch.zeros(ar.prior.head.out_features)
    bias[token] = 50.0
    return ar.prior.head.register_forward_hook(lambda m, args, out: out + bias)


def test_ar_generation_draws_only_codes_or_eos_and_stays_ended_after_eos():
    ar = _ar()
    x, prompt, _ = _data()
    g = torch.Generator().manual_seed(0)
    out = ar.generate(x, prompt[..., 0], max_frames=5, generator=g)
    assert out.shape == (2, 5) and ((out >= 0) & (out <= K)).all()  # never a phoneme id
    ended = out == K
    assert torch.equal(ended, ended.long().cummax(dim=1).values.bool())
    h = _forcing(ar, ar.eos)
    assert (ar.generate(x, prompt[..., 0], max_frames=5, generator=g) == K).all()  # <eos> first: nothing spoken
    h.remove()
    h = _forcing(ar, P + 2)
    assert (ar.generate(x, prompt[..., 0], max_frames=5, generator=g) == 2).all()
    h.remove()


def test_nar_refuses_the_first_level_and_levels_past_q():
    nar = _nar()
    x, prompt, target = _data()
    for bad in (0, Q):
        with pytest.raises(ValueError, match="predicts levels 1"):
            nar(x, prompt, target, bad)
