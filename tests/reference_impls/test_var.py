import pytest
import torch
import torch.nn.functional as F

from reference_impls.attention import TransformerBlock
from reference_impls.var import (
    AdaLNBeforeHead,
    AdaLNBlock,
    MultiScaleVQ,
    PhiBank,
    VARPrior,
    block_causal_mask,
    guidance_ramp,
    sample,
    scale_ids,
    sequence_length,
    var_loss,
)

SCALES = (1, 2, 3, 4)
C = 6


def tiny_vq(**kw):
    return MultiScaleVQ(num_codes=17, dim=C, scales=SCALES, generator=torch.Generator().manual_seed(0), **kw)


def tiny_prior():
    torch.manual_seed(0)
    return VARPrior(vocab_size=17, code_dim=C, n_classes=3, dim=32, n_layers=2, n_heads=2, scales=SCALES).eval()


def feature_map(b=2, seed=1):
    return torch.randn(b, C, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_default_256px_pyramid_has_ten_scales_and_680_tokens():
    scales = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    assert sequence_length(scales) == 680
    assert block_causal_mask(scales).shape == (680, 680)


def test_block_causal_mask_lets_a_scale_see_every_coarser_token_and_its_own_and_no_finer():
    mask, ids = block_causal_mask(SCALES), scale_ids(SCALES)
    for i in range(len(ids)):
        for j in range(len(ids)):
            assert bool(mask[i, j]) == bool(ids[j] <= ids[i])
    # inside one scale attention is full, not causal: the first token of scale 3 sees the last one
    first, last = 1 + 4 + 9, 1 + 4 + 9 + 15
    assert mask[first, last]


def test_prior_scale_sees_all_coarser_scales_and_none_finer():
    prior, vq = tiny_prior(), tiny_vq()
    with torch.no_grad():
        inputs = vq.next_scale_inputs(vq.encode(feature_map())[0])  # (B, L - 1, C)
    inputs.requires_grad_(True)
    labels = torch.tensor([0, 2])
    logits = prior(labels, inputs)  # (B, L, V)
    ids = scale_ids(SCALES)
    in_ids = ids[1:]  # inputs start at scale 1 (scale 0 is the class token)
    for k in range(len(SCALES)):
        (grad,) = torch.autograd.grad(logits[:, ids == k].sum(), inputs, retain_graph=True)
        per_scale = torch.stack([grad[:, in_ids == j].abs().sum() for j in range(1, len(SCALES))])
        for j in range(1, len(SCALES)):
            if j <= k:
                assert per_scale[j - 1] > 0, (k, j)
            else:
                assert per_scale[j - 1] == 0, (k, j)


def test_scale_contributions_sum_to_the_reconstruction_and_leave_exactly_the_residual():
    vq, f = tiny_vq(), feature_map()
    indices, parts, f_rest = vq.encode(f)
    f_hat = sum(parts)
    torch.testing.assert_close(f_hat + f_rest, f, rtol=0, atol=1e-5)
    torch.testing.assert_close(vq.decode_indices(indices), f_hat, rtol=0, atol=1e-6)  # from tokens alone
    out, _, _ = vq(f)
    torch.testing.assert_close(out, f_hat, rtol=0, atol=1e-5)
    assert [tuple(i.shape[1:]) for i in indices] == [(s, s) for s in SCALES]


def test_each_scale_quantises_the_area_downsampled_residual_of_the_coarser_scales():
    vq, f = tiny_vq(rho=0.0), feature_map()  # phi = identity to compare with plain nearest-code search
    indices, parts, _ = vq.encode(f)
    rest = f
    for k, s in enumerate(SCALES):
        r = F.interpolate(rest, size=(s, s), mode="area") if s != 4 else rest
        d = ((r.permute(0, 2, 3, 1)[..., None, :] - vq.codebook) ** 2).sum(-1)  # (B, s, s, V)
        assert torch.equal(indices[k], d.argmin(-1))
        rest = rest - parts[k]


def test_teacher_forcing_input_of_scale_k_is_the_downsampled_partial_sum():
    vq, f = tiny_vq(), feature_map()
    indices, parts, _ = vq.encode(f)
    inputs = vq.next_scale_inputs(indices)
    start = 0
    for k in range(1, len(SCALES)):
        s = SCALES[k]
        partial = sum(parts[:k])
        expected = F.interpolate(partial, size=(s, s), mode="area") if s != 4 else partial
        torch.testing.assert_close(inputs[:, start : start + s * s], expected.flatten(2).transpose(1, 2))
        start += s * s
    assert inputs.shape[1] == sequence_length(SCALES) - 1


def test_straight_through_gives_the_encoder_the_decoder_gradient():
    vq = tiny_vq()
    f = feature_map().requires_grad_(True)
    out, _, loss = vq(f)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * g).sum(), f)
    torch.testing.assert_close(grad, g)
    assert loss > 0


def test_four_shared_convs_cover_ten_scales_as_the_official_ticks_do():
    """quant.py PhiPartiallyShared: ticks linspace(1/12, 11/12, 4), nearest to k / 9. Scales 2 and 7 lie
    exactly between two ticks (5/36 from each); the float rounding of the official expression picks 1 and 3."""
    bank = PhiBank(C, n_phi=4)
    assert [bank.index(k, 10) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_guidance_ramps_from_none_at_the_first_scale_to_cfg_at_the_last():
    assert guidance_ramp(1.5, 0, 10) == 0.0
    assert guidance_ramp(1.5, 9, 10) == pytest.approx(1.5)


def test_loss_is_cross_entropy_of_every_token_of_the_pyramid():
    prior, vq, f = tiny_prior(), tiny_vq(), feature_map()
    labels = torch.tensor([1, 2])
    indices, _, _ = vq.encode(f)
    logits = prior(labels, vq.next_scale_inputs(indices))
    target = torch.cat([i.flatten(1) for i in indices], dim=1)
    expected = F.cross_entropy(logits.reshape(-1, 17), target.reshape(-1))
    torch.testing.assert_close(var_loss(prior, vq, f, labels, p_uncond=0.0), expected)


def test_greedy_sample_at_zero_guidance_reproduces_the_argmax_of_the_teacher_forced_prior():
    prior, vq = tiny_prior(), tiny_vq()
    labels = torch.tensor([0, 1])
    indices, f_hat = sample(prior, vq, labels, cfg=0.0, top_k=1, generator=torch.Generator().manual_seed(3))
    logits = prior(labels, vq.next_scale_inputs(indices))
    assert torch.equal(torch.cat([i.flatten(1) for i in indices], dim=1), logits.argmax(-1))
    torch.testing.assert_close(f_hat, vq.decode_indices(indices))


def test_feature_map_that_is_not_the_last_scale_is_refused():
    with pytest.raises(ValueError, match="not the last scale"):
        tiny_vq().encode(torch.zeros(1, C, 5, 5))


# ----------------------------------------------------------------------------- adaLN conditioning


def randomised(module, seed=0, std=0.3):
    """Give every adaLN modulation Linear random weights (they start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (AdaLNBlock, AdaLNBeforeHead)):
                for p in m.ada.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def test_zero_initialised_adaln_block_is_the_identity_and_the_head_norm_a_plain_layer_norm():
    torch.manual_seed(0)
    block, head = AdaLNBlock(16, 2, cond_dim=8), AdaLNBeforeHead(16, 8)
    x, c = torch.randn(2, 5, 16), torch.randn(2, 8)
    torch.testing.assert_close(block(x, c), x, rtol=0, atol=0)  # gates g1 = g2 = 0
    torch.testing.assert_close(head(x, c), F.layer_norm(x, (16,)))


def test_adaln_block_with_unit_gates_and_no_scale_or_shift_equals_the_unconditioned_pre_ln_block():
    torch.manual_seed(0)
    block, plain = AdaLNBlock(16, 2, cond_dim=8), TransformerBlock(16, 2)
    block.attn.load_state_dict(plain.attn.state_dict())
    block.ffn.load_state_dict(plain.ffn.state_dict())
    with torch.no_grad():
        block.ada[1].bias[:32] = 1.0  # gamma1 = gamma2 = 1, scales and shifts 0, whatever the condition
    x, mask = torch.randn(2, 5, 16), block_causal_mask((1, 2))
    for c in (torch.randn(2, 8), torch.randn(2, 8) * 10):
        torch.testing.assert_close(block(x, c, mask=mask), plain(x, mask=mask), rtol=1e-5, atol=1e-6)


def test_adaln_block_reads_the_condition_only_through_its_six_modulation_vectors():
    torch.manual_seed(0)
    block = randomised(AdaLNBlock(16, 2, cond_dim=8))
    with torch.no_grad():
        block.ada[1].weight[:, 0] = 0.0  # condition channel 0 does not reach the modulation
    x, c = torch.randn(2, 5, 16), torch.randn(2, 8)
    moved_in_null = c.clone()
    moved_in_null[:, 0] += 3.0
    moved = c.clone()
    moved[:, 1] += 3.0
    torch.testing.assert_close(block(x, moved_in_null), block(x, c), rtol=0, atol=0)
    assert (block(x, moved) - block(x, c)).abs().max() > 1e-3
    # and the output is exactly the released formula of the six vectors
    g1, g2, s1, s2, b1, b2 = block.ada(c).view(2, 1, 6, 16).unbind(2)
    ln = lambda t: F.layer_norm(t, (16,))  # noqa: E731
    h = x + g1 * block.attn(ln(x) * (1 + s1) + b1)
    torch.testing.assert_close(block(x, c), h + g2 * block.ffn(ln(h) * (1 + s2) + b2))


def test_adaln_prior_keeps_the_block_causal_structure_and_the_sampler_its_teacher_forced_argmax():
    torch.manual_seed(0)
    prior = randomised(
        VARPrior(vocab_size=17, code_dim=C, n_classes=3, dim=32, n_layers=2, n_heads=2, scales=SCALES, adaln=True)
    ).eval()
    vq = tiny_vq()
    with torch.no_grad():
        inputs = vq.next_scale_inputs(vq.encode(feature_map())[0])
    inputs.requires_grad_(True)
    logits = prior(torch.tensor([0, 2]), inputs)
    ids = scale_ids(SCALES)
    (grad,) = torch.autograd.grad(logits[:, ids == 1].sum(), inputs)
    assert grad[:, ids[1:] == 1].abs().sum() > 0 and grad[:, ids[1:] > 1].abs().sum() == 0
    labels = torch.tensor([0, 1])
    indices, _ = sample(prior, vq, labels, cfg=0.0, top_k=1, generator=torch.Generator().manual_seed(3))
    logits = prior(labels, vq.next_scale_inputs(indices))
    assert torch.equal(torch.cat([i.flatten(1) for i in indices], dim=1), logits.argmax(-1))
