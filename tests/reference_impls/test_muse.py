import pytest
import torch

from reference_impls.guidance import guide_s
from reference_impls.maskgit import apply_mask, decode, masked_token_loss, training_mask
from reference_impls.muse import (
    FrozenTextEncoder,
    MuseSuperRes,
    MuseTransformer,
    generate,
    guidance_schedule,
    guided_logits,
    super_resolve,
    training_loss,
)

K, N, E = 16, 16, 32


def setup(seed=0):
    torch.manual_seed(seed)
    enc = FrozenTextEncoder(vocab=50, dim=E, max_len=8)
    model = MuseTransformer(K, N, text_dim=E, dim=32, depth=2).eval()
    g = torch.Generator().manual_seed(seed)
    text = enc(torch.randint(0, 50, (2, 6), generator=g))
    neg = enc(torch.randint(0, 50, (2, 6), generator=g))
    tokens = torch.randint(0, K + 1, (2, N), generator=g)
    return model, text, neg, tokens


def test_guidance_scale_zero_gives_the_conditional_logits():
    model, text, _, tokens = setup()
    out = guided_logits(model, tokens, text, 0.0)
    assert torch.equal(out, model(tokens, text))


def test_guidance_matches_muse_equation_and_the_s_form():
    model, text, _, tokens = setup()
    lc, lu = model(tokens, text), model(tokens, None)
    t = 2.5
    out = guided_logits(model, tokens, text, t)
    assert torch.allclose(out, (1 + t) * lc - t * lu, atol=1e-5)
    assert torch.allclose(out, guide_s(lc, lu, 1 + t), atol=1e-5)
    assert not torch.allclose(lc, lu)  # the text really changes the logits


def test_negative_prompt_replaces_the_unconditional_branch():
    model, text, neg, tokens = setup()
    t = 1.5
    out = guided_logits(model, tokens, text, t, negative_emb=neg)
    lc, ln, lu = model(tokens, text), model(tokens, neg), model(tokens, None)
    assert torch.allclose(out, (1 + t) * lc - t * ln, atol=1e-5)
    assert not torch.allclose(out, (1 + t) * lc - t * lu, atol=1e-3)


def test_dropped_text_equals_no_cross_attention():
    model, text, _, tokens = setup()
    keep = torch.tensor([True, False])
    out = model(tokens, text, keep=keep)
    assert torch.allclose(out[0], model(tokens, text)[0], atol=1e-6)
    assert torch.allclose(out[1], model(tokens, None)[1], atol=1e-6)


def test_guidance_scale_rises_linearly_to_its_maximum():
    scales = [guidance_schedule(k, 4, 3.0) for k in range(4)]
    assert scales == [0.75, 1.5, 2.25, 3.0]


def test_text_encoder_is_frozen_and_base_model_learns():
    enc = FrozenTextEncoder(vocab=50, dim=E, max_len=8)
    assert all(not p.requires_grad for p in enc.parameters())
    model, text, _, _ = setup()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, K, (2, N), generator=g)
    loss = training_loss(model.train(), tokens, text, p_uncond=0.5, generator=g)
    loss.backward()
    assert model.text_proj.weight.grad is not None and model.tok.weight.grad.abs().sum() > 0


def test_generation_is_maskgit_decoding_of_the_guided_logits_with_the_rising_scale():
    model, text, neg, _ = setup()
    steps, max_scale = 6, 2.0
    calls = []

    forward = model.forward
    model.forward = lambda tokens, emb: (calls.append(emb), forward(tokens, emb))[1]
    got = generate(
        model, text, steps=steps, max_scale=max_scale, negative_emb=neg, generator=torch.Generator().manual_seed(0)
    )
    # two passes per step: the text, then the negative prompt as the "unconditional" side
    assert len(calls) == 2 * steps and all(c is text for c in calls[0::2]) and all(c is neg for c in calls[1::2])
    del model.forward

    def by_hand(x, k):  # (1 + t_k) l_c - t_k l_u with t_k = max_scale (k + 1) / T
        t_k = max_scale * (k + 1) / steps
        return (1 + t_k) * model(x, text) - t_k * model(x, neg)

    start = torch.full((2, N), K)
    want = decode(by_hand, start, torch.ones(2, N, dtype=torch.bool), K, steps, torch.Generator().manual_seed(0))
    assert torch.equal(got, want)
    assert ((got >= 0) & (got < K)).all()


def test_super_resolution_model_sees_every_low_resolution_token():
    torch.manual_seed(0)
    n_lo, n_hi, k_lo, k_hi = 16, 64, 12, 20
    sr = MuseSuperRes(k_lo, n_lo, k_hi, n_hi, text_dim=E, dim=32).eval()
    g = torch.Generator().manual_seed(0)
    low = torch.randint(0, k_lo, (1, n_lo), generator=g)
    high = torch.full((1, n_hi), k_hi)  # all masked
    text = torch.randn(1, 5, E, generator=g)
    base = sr(high, low, text)
    for i in range(n_lo):
        changed = low.clone()
        changed[0, i] = (changed[0, i] + 1) % k_lo
        assert not torch.allclose(sr(high, changed, text), base), f"low-res token {i} is ignored"
    # and every high-res position depends on the low-res tokens
    emb = sr.lo_tok(low).detach().requires_grad_(True)
    ctx_in = emb + sr.lo_pos
    x = sr.hi_tok(high) + sr.hi_pos
    c = ctx_in
    for blk in sr.lo_encoder:
        c = blk(c)
    c = torch.cat([c, sr.text_proj(text)], dim=1)
    for blk in sr.blocks:
        x = blk(x, context=c)
    out = sr.head(sr.ln(x))  # (1, N_hi, K)
    for j in (0, n_hi // 2, n_hi - 1):
        (grad,) = torch.autograd.grad(out[0, j].sum(), emb, retain_graph=True)
        assert torch.all(grad[0].abs().sum(-1) > 0)


def test_super_resolve_guides_by_dropping_only_the_text_and_keeps_the_low_res_tokens():
    torch.manual_seed(0)
    sr = MuseSuperRes(12, 16, 20, 64, text_dim=E, dim=32).eval()
    low = torch.randint(0, 12, (2, 16))
    text = torch.randn(2, 5, E)
    steps, max_scale = 4, 1.5
    got = super_resolve(sr, low, text, steps=steps, max_scale=max_scale, generator=torch.Generator().manual_seed(0))

    def by_hand(x, k):  # unconditional side: the same low-res tokens, no text
        t_k = max_scale * (k + 1) / steps
        return (1 + t_k) * sr(x, low, text) - t_k * sr(x, low, None)

    start = torch.full((2, 64), 20)
    want = decode(by_hand, start, torch.ones(2, 64, dtype=torch.bool), 20, steps, torch.Generator().manual_seed(0))
    assert torch.equal(got, want)
    other = super_resolve(
        sr, (low + 1) % 12, text, steps=steps, max_scale=max_scale, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.equal(got, other)  # the low-res tokens steer the result


@pytest.mark.parametrize("batch", [1, 16])
def test_training_loss_is_the_masked_token_loss_with_the_text_dropped_for_a_tenth_by_default(batch):
    model, _, _, _ = setup()
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, K, (batch, N), generator=g)
    text = torch.randn(batch, 6, E, generator=g)
    got = training_loss(model, tokens, text, generator=torch.Generator().manual_seed(7))

    # by hand, in the same order of draws from the same generator: cosine mask, then the dropout
    g = torch.Generator().manual_seed(7)
    mask = training_mask(batch, N, g)
    dropped = torch.rand(batch, generator=g) < 0.1  # guidance.drop_condition with p_uncond = 0.1
    want = masked_token_loss(model(apply_mask(tokens, mask, K), text, keep=~dropped), tokens, mask)
    assert torch.allclose(got, want, atol=1e-6)
    if batch > 1:  # the seed drops some texts and keeps others, so the dropout is really seen
        assert dropped.any() and not dropped.all()
        assert not torch.allclose(got, masked_token_loss(model(apply_mask(tokens, mask, K), text), tokens, mask))


class CountingCalls:
    """Wraps a model's forward and counts its calls."""

    def __init__(self, model):
        self.calls, forward = 0, model.forward

        def counted(*args):
            self.calls += 1
            return forward(*args)

        model.forward = counted


def test_generation_defaults_to_twelve_unguided_steps_and_passes_decoding_options_on():
    model, text, _, _ = setup()
    counter, history = CountingCalls(model), []
    got = generate(model, text, generator=torch.Generator().manual_seed(0), history=history)
    assert counter.calls == 12  # T = 12, one pass per step: scale 0 computes no unconditional logits
    assert len(history) == 12 and not history[-1].any()  # history= reached maskgit.decode
    assert ((got >= 0) & (got < K)).all()


def test_super_resolution_defaults_to_eight_unguided_steps_and_passes_decoding_options_on():
    torch.manual_seed(0)
    sr = MuseSuperRes(12, 16, 20, 64, text_dim=E, dim=32).eval()
    low, text = torch.randint(0, 12, (2, 16)), torch.randn(2, 5, E)
    counter, history = CountingCalls(sr), []
    got = super_resolve(sr, low, text, generator=torch.Generator().manual_seed(0), history=history)
    assert counter.calls == 8 and len(history) == 8 and not history[-1].any()
    assert ((got >= 0) & (got < 20)).all()


def super_res_inputs(seed=0):
    torch.manual_seed(seed)
    sr = MuseSuperRes(12, 16, 20, 64, text_dim=E, dim=32).eval()
    g = torch.Generator().manual_seed(seed)
    low = torch.randint(0, 12, (1, 16), generator=g)
    high = torch.randint(0, 21, (1, 64), generator=g)  # some masked, some known
    return sr, low, high, torch.randn(1, 5, E, generator=g)


def test_super_resolution_logits_depend_on_the_text():
    sr, low, high, text = super_res_inputs()
    with_text = sr(high, low, text)
    assert not torch.allclose(with_text, sr(high, low, None), atol=1e-4)
    assert not torch.allclose(with_text, sr(high, low, torch.randn(1, 5, E)), atol=1e-4)


def test_super_resolution_reads_the_low_res_tokens_in_their_positions():
    # without a position per low-res token the encoder and the cross-attention see a set:
    # swapping two different low-res tokens would change nothing
    sr, low, high, text = super_res_inputs()
    i, j = 0, int((low[0] != low[0, 0]).nonzero()[0])
    swapped = low.clone()
    swapped[0, [i, j]] = low[0, [j, i]]
    assert not torch.allclose(sr(high, swapped, text), sr(high, low, text), atol=1e-4)


def test_low_res_encoder_mixes_the_low_res_tokens_before_the_high_res_model_reads_them():
    sr, low, _, _ = super_res_inputs()
    changed = low.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 12
    before, after = sr.context(low, None), sr.context(changed, None)  # (1, 16, D)
    # the context of the first low-res token changes with the last token: self-attention mixed them
    assert not torch.allclose(before[0, 0], after[0, 0], atol=1e-5)


def test_default_sizes_are_a_64_wide_base_and_super_res_with_a_one_layer_low_res_encoder():
    base = MuseTransformer(K, N, text_dim=E)
    assert base.pos.shape == (N, 64) and len(base.blocks) == 2
    sr = MuseSuperRes(12, 16, 20, 64, text_dim=E)
    assert sr.hi_pos.shape == (64, 64) and len(sr.lo_encoder) == 1 and len(sr.blocks) == 2


def test_default_text_encoder_reads_ids_below_100_up_to_16_tokens_into_32_wide_embeddings():
    enc = FrozenTextEncoder()
    assert enc(torch.full((2, 16), 99)).shape == (2, 16, 32)
    with pytest.raises(IndexError):
        enc(torch.full((2, 3), 100))  # id 100 is outside the vocabulary
    with pytest.raises(RuntimeError):
        enc(torch.zeros(2, 17, dtype=torch.long))  # one token more than max_len


def test_position_tables_start_as_small_gaussians_of_std_0_02():
    torch.manual_seed(0)
    tables = [
        FrozenTextEncoder(dim=64, max_len=64).pos,
        MuseTransformer(K, 64, text_dim=E).pos,
        MuseSuperRes(12, 64, 20, 64, text_dim=E).lo_pos,
        MuseSuperRes(12, 64, 20, 64, text_dim=E).hi_pos,
    ]
    for pos in tables:
        assert pos.shape == (64, 64)
        assert 0.018 < float(pos.detach().std()) < 0.022 and float(pos.detach().abs().max()) < 0.12  # 6 sigma
