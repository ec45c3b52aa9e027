import itertools

import pytest
import torch
import torch.nn.functional as F

from reference_impls.infinity import (
    BitwiseHead,
    InfinityPrior,
    binary_quantize,
    bits_to_codes,
    bits_to_index,
    bitwise_loss,
    decode_bits,
    encode,
    index_to_bits,
    infinity_loss,
    sample,
    token_log_prob,
)
from reference_impls.var import scale_ids

SCALES = (1, 2, 4)
D = 5  # bits per token: vocabulary 2^5 = 32


def features(b=2, seed=0):
    return torch.sign(torch.randn(b, D, 4, 4, generator=torch.Generator().manual_seed(seed))) * torch.rand(
        b, D, 4, 4, generator=torch.Generator().manual_seed(seed + 100)
    )


def tiny_prior(adaln=False):
    torch.manual_seed(0)
    prior = InfinityPrior(bits=D, dim=32, n_layers=2, n_heads=2, scales=SCALES, adaln=adaln).eval()
    if adaln:  # the shared modulation starts at zero (adaLN-Zero); give it random weights to test it
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in [*prior.shared_ada.parameters(), *prior.ln_f.ada.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            for block in prior.blocks:
                block.ada_gss.copy_(torch.randn(block.ada_gss.shape, generator=g) * 0.3)
    return prior


def test_bitwise_likelihood_is_the_factorised_per_bit_likelihood_and_a_softmax_over_all_2_to_the_d_tokens():
    logits = torch.randn(3, D, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    patterns = torch.tensor(list(itertools.product([0, 1], repeat=D)))  # (32, D), every token
    logp = torch.stack([token_log_prob(logits, p.expand(3, D)) for p in patterns], dim=1)  # (3, 32)
    per_bit = logits.log_softmax(-1)  # (3, D, 2)
    for j, p in enumerate(patterns):
        torch.testing.assert_close(logp[:, j], sum(per_bit[:, c, p[c]] for c in range(D)))
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(3, dtype=torch.float64))  # a distribution over 2^d
    # the same distribution as one softmax over 2^d tokens whose logit is the sum of the chosen bit logits
    joint = torch.stack([sum(logits[:, c, p[c]] for c in range(D)) for p in patterns], dim=1)  # (3, 32)
    torch.testing.assert_close(logp, joint.log_softmax(-1))


def test_head_has_2d_outputs_and_no_softmax_over_2_to_the_d():
    head = BitwiseHead(2048, 32)  # the README's example: d = 32, h = 2048
    n_params = sum(p.numel() for p in head.parameters())
    assert n_params == 2 * 32 * (2048 + 1)  # 131,136: the README's 0.13M
    conventional_head = 2048 * 2**32  # a 2^32-way classifier's weights
    assert conventional_head == pytest.approx(8.8e12, rel=0.01)  # the README's 8.8T
    out = head(torch.zeros(1, 7, 2048))
    assert out.shape == (1, 7, 32, 2)


def test_bit_pattern_and_index_round_trip():
    idx = torch.arange(2**D)
    bits = index_to_bits(idx, D)
    assert torch.equal(bits_to_index(bits), idx)
    assert torch.equal(bits[5], torch.tensor([1, 0, 1, 0, 0]))  # 5 = 2^0 + 2^2


def test_codes_are_signs_on_the_unit_sphere_and_gradient_passes_straight_through():
    r = torch.randn(2, D, 3, 3, generator=torch.Generator().manual_seed(2), requires_grad=True)
    q, bits = binary_quantize(r)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(2, 3, 3))
    assert torch.equal(bits, (r > 0).permute(0, 2, 3, 1))
    torch.testing.assert_close(q * D**0.5, torch.sign(r).detach())
    g = torch.randn_like(q)
    (grad,) = torch.autograd.grad((q * g).sum(), r)
    (expected,) = torch.autograd.grad((F.normalize(r, dim=1) * g).sum(), r)
    torch.testing.assert_close(grad, expected)  # the gradient of the normalised input, unchanged


def test_scales_bits_decode_to_the_running_sum():
    f = features()
    labels, inputs, f_hat = encode(f, SCALES)
    torch.testing.assert_close(decode_bits(labels, 4), f_hat)
    assert [tuple(b.shape[1:]) for b in labels] == [(1, 1, D), (2, 2, D), (4, 4, D)]
    assert inputs.shape == (2, 4 + 16, D)
    # scale 1 quantises the residual left by scale 0
    code0 = bits_to_codes(labels[0]).permute(0, 3, 1, 2)  # (B, D, 1, 1): up() from 1x1 is constant
    expected = F.interpolate(f - code0, size=(2, 2), mode="area") > 0
    assert torch.equal(labels[1], expected.permute(0, 2, 3, 1))


def test_self_correction_labels_correct_the_flipped_history():
    f = features(seed=3)
    clean, _, _ = encode(f, SCALES)
    labels, inputs, _ = encode(f, SCALES, n_flip=1, strength=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(labels[0], clean[0])  # the flipped scale keeps its true labels
    flipped0 = inputs[:, :1].reshape(2, 1, 1, D) * D**0.5 > 0  # scale 1's input carries the flipped code
    assert not torch.equal(flipped0, clean[0]), "the seed must flip at least one bit"
    code0 = bits_to_codes(flipped0).permute(0, 3, 1, 2)
    expected = (F.interpolate(f - code0, size=(2, 2), mode="area") > 0).permute(0, 2, 3, 1)
    assert torch.equal(labels[1], expected)  # the next scale's labels are computed after the error
    assert not torch.equal(labels[1], clean[1])


def test_no_flip_strength_leaves_the_encoding_unchanged():
    f = features(seed=4)
    a, ia, fa = encode(f, SCALES)
    b, ib, fb = encode(f, SCALES, n_flip=3, strength=0.0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    torch.testing.assert_close(ia, ib)


def test_loss_is_the_per_bit_cross_entropy_of_the_pyramid():
    prior, f = tiny_prior(), features()
    ctx = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(6))
    labels, inputs, _ = encode(f, SCALES)
    logits = prior(ctx, inputs)
    target = torch.cat([b.flatten(1, 2) for b in labels], dim=1)
    torch.testing.assert_close(infinity_loss(prior, f, ctx), -token_log_prob(logits, target).mean() / D)
    torch.testing.assert_close(bitwise_loss(logits, target), -token_log_prob(logits, target).mean() / D)


@pytest.mark.parametrize("adaln", [False, True])
def test_prior_scale_sees_coarser_scales_and_none_finer(adaln):
    prior = tiny_prior(adaln)
    ctx = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(7))
    inputs = torch.randn(1, 20, D, generator=torch.Generator().manual_seed(8), requires_grad=True)
    logits = prior(ctx, inputs)
    ids, in_ids = scale_ids(SCALES), scale_ids(SCALES)[1:]
    (grad,) = torch.autograd.grad(logits[:, ids == 1].sum(), inputs)
    assert grad[:, in_ids == 1].abs().sum() > 0
    assert grad[:, in_ids == 2].abs().sum() == 0


@pytest.mark.parametrize("adaln", [False, True])
def test_dropped_condition_ignores_the_text_and_sampling_decodes_its_bits(adaln):
    prior = tiny_prior(adaln)
    g = torch.Generator().manual_seed(9)
    c1, c2 = torch.randn(2, 3, 32, generator=g), torch.randn(2, 3, 32, generator=g)
    inputs = torch.randn(2, 20, D, generator=g)
    off = torch.zeros(2, dtype=torch.bool)
    torch.testing.assert_close(prior(c1, inputs, off), prior(c2, inputs, off))
    assert (prior(c1, inputs) - prior(c2, inputs)).abs().max() > 1e-5
    bits, f_hat = sample(prior, c1, cfg=3.0, generator=torch.Generator().manual_seed(10))
    torch.testing.assert_close(f_hat, decode_bits(bits, 4))


def test_shared_adaln_modulation_is_one_linear_plus_each_blocks_own_offset():
    """infinity.py shared_ada_lin + basic.py ada_gss: block l's six vectors are Linear(SiLU(c)) + ada_gss_l."""
    prior = tiny_prior(adaln=True)
    c = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))
    shared = prior.shared_ada(c).view(2, 6, 32)
    for block in prior.blocks:
        torch.testing.assert_close(block.modulation(shared), shared + block.ada_gss)
    fresh = InfinityPrior(bits=D, dim=32, n_layers=2, n_heads=2, scales=SCALES, adaln=True)
    ctx = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(7))
    inputs = torch.randn(1, 20, D, generator=torch.Generator().manual_seed(8))
    out = fresh(ctx, inputs)
    with torch.no_grad():  # at zero shared weights and zero offsets the gates are zero: no self-attention or MLP
        for block in fresh.blocks:
            block.attn.out_proj.weight.normal_()
            block.ffn[2].weight.normal_()
    torch.testing.assert_close(fresh(ctx, inputs), out, rtol=0, atol=0)
