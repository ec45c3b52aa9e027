import math

import pytest
import torch

from reference_impls.gigatok import (
    FeatureProjector,
    FrozenPatchEncoder,
    SemanticallyRegularizedTokenizer,
    gigatok_tokenizer,
    semantic_regularization,
)
from reference_impls.titok import TiTok

PATCH, DT = 4, 12


def _system(layer=1, seed=0):
    torch.manual_seed(seed)
    tok = TiTok(
        num_latent_tokens=4,
        codebook_size=16,
        token_dim=4,
        patch_size=PATCH,
        dim=16,
        depth=3,
        generator=torch.Generator().manual_seed(seed),
    )
    return SemanticallyRegularizedTokenizer(
        tok, FrozenPatchEncoder(PATCH, DT, seed=seed + 1), teacher_dim=DT, layer=layer
    )


def _images(seed=2):
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_regulariser_equals_minus_the_mean_cosine_on_a_hand_example():
    f = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 4.0], [1.0, 0.0]]])  # (B=2, N=2, D=2)
    t = torch.tensor([[[2.0, 0.0], [1.0, 1.0]], [[-3.0, -4.0], [0.0, 5.0]]])
    cos = [1.0, 1 / math.sqrt(2), -1.0, 0.0]
    assert semantic_regularization(f, t).item() == pytest.approx(-sum(cos) / 4, abs=1e-6)


def test_regulariser_is_minus_one_when_aligned_plus_one_when_opposed_and_scale_free():
    t = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    assert semantic_regularization(3.0 * t, t).item() == pytest.approx(-1.0, abs=1e-6)
    assert semantic_regularization(-0.5 * t, t).item() == pytest.approx(1.0, abs=1e-6)
    assert semantic_regularization(t, 7.0 * t).item() == pytest.approx(-1.0, abs=1e-6)


def test_regulariser_falls_as_features_align_with_the_teacher():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4, 6, 16, generator=g)  # decoder states
    teacher = torch.randn(4, 6, DT, generator=g)
    torch.manual_seed(0)
    phi = FeatureProjector(16, DT)
    opt = torch.optim.Adam(phi.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = semantic_regularization(phi(h), teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5  # from about 0 (random directions) toward -1
    assert losses[-1] < -0.6


def test_teacher_is_frozen_and_receives_no_gradient():
    model = _system()
    teacher = model.teacher
    assert not list(teacher.parameters())  # only buffers
    before = teacher(_images()).clone()
    model(_images()).total.backward()
    assert torch.equal(teacher(_images()), before)


def test_regulariser_trains_the_decoder_up_to_its_layer_and_nothing_after_it():
    model = _system(layer=2)
    model(_images()).reg_loss.backward()
    blocks = model.tokenizer.decoder.blocks

    def grad(m):
        return sum(p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None)

    assert grad(blocks[0]) > 0 and grad(blocks[1]) > 0  # layers 1..l
    assert grad(blocks[2]) == 0 and grad(model.tokenizer.decoder.to_pixels) == 0  # after layer l
    assert grad(model.tokenizer.encoder) > 0  # through the straight-through codes into the encoder
    assert grad(model.projector) > 0


def test_total_loss_is_rec_plus_vq_plus_weighted_regulariser():
    model = _system()
    out = model(_images())
    assert torch.allclose(out.total, out.rec_loss + out.vq_loss + 0.5 * out.reg_loss)
    assert torch.allclose(out.rec_loss, (out.reconstruction - _images()).square().mean())


def test_shapes_that_do_not_pair_a_teacher_vector_with_each_position_are_refused():
    with pytest.raises(ValueError, match="one teacher vector per decoder position"):
        semantic_regularization(torch.zeros(1, 4, 8), torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="not a decoder layer"):
        _system(layer=4)


# ----------------------------------------------------------------------------- the Q-Former decoder

GRID = (4, 4)


def _qformer(depth=3, seed=0):
    torch.manual_seed(seed)
    return gigatok_tokenizer(
        grid=GRID,
        depth=depth,
        num_latent_tokens=4,
        codebook_size=16,
        token_dim=4,
        patch_size=PATCH,
        dim=16,
        generator=torch.Generator().manual_seed(seed),
    )


def _mha_like(ours):
    """torch.nn.MultiheadAttention (what TransformerDecoderLayer uses without RoPE / QK-norm) with our weights."""
    mha = torch.nn.MultiheadAttention(16, ours.n_heads, dropout=0.0)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        mha.out_proj.load_state_dict(ours.out_proj.state_dict())
    return mha


def test_qformer_layer_equals_the_released_forward_pre_written_with_torch_multihead_attention():
    layer = _qformer().decoder.blocks[0]
    g = torch.Generator().manual_seed(3)
    q, mem = torch.randn(2, 16, 16, generator=g), torch.randn(2, 4, 16, generator=g)
    qpos, mpos = torch.randn(16, 16, generator=g), torch.randn(4, 16, generator=g)
    sa, ca = _mha_like(layer.self_attn), _mha_like(layer.cross_attn)
    lnd = lambda t: t.transpose(0, 1)  # noqa: E731  (B, L, D) -> (L, B, D), the release's layout
    tgt, memory, query_pos, pos = lnd(q), lnd(mem), qpos[:, None], mpos[:, None]
    tgt2 = layer.norm1(tgt)
    tgt = tgt + sa(tgt2 + query_pos, tgt2 + query_pos, value=tgt2)[0]
    tgt2 = layer.norm2(tgt)
    tgt = tgt + ca(query=tgt2 + query_pos, key=memory + pos, value=memory)[0]
    tgt = tgt + layer.mlp(layer.norm3(tgt))
    torch.testing.assert_close(layer(q, mem, qpos, mpos), lnd(tgt), rtol=1e-5, atol=1e-5)


def test_every_grid_query_reads_every_token_and_the_tokens_are_never_rewritten():
    dec = _qformer().decoder
    z = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(4), requires_grad=True)
    out = dec(z, GRID)  # (1, 3, 16, 16)
    for patch in ((0, 0), (3, 3), (1, 2)):
        r, c = patch[0] * PATCH, patch[1] * PATCH
        (g,) = torch.autograd.grad(out[0, :, r : r + PATCH, c : c + PATCH].sum(), z, retain_graph=True)
        assert (g[0].abs().sum(-1) > 0).all(), patch  # each of the K tokens reaches each patch
    # the memory the queries attend to is the embedded tokens themselves, the same at every layer
    seen = []
    hooks = [b.cross_attn.k_proj.register_forward_hook(lambda m, i, o: seen.append(i[0])) for b in dec.blocks]
    dec(z, GRID)
    for h in hooks:
        h.remove()
    memory = dec.embed(dec.ln_pre(z)) + dec.latent_pos
    for keys in seen:
        torch.testing.assert_close(keys, memory)


def test_queries_start_as_the_first_tokens_embedding_copied_to_every_grid_position():
    dec = _qformer().decoder
    with torch.no_grad():
        for b in dec.blocks:
            b.cross_attn.out_proj.weight.zero_()  # no cross-attention: only the initial queries carry tokens
            b.cross_attn.out_proj.bias.zero_()
    z = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(5), requires_grad=True)
    (g,) = torch.autograd.grad(dec(z, GRID).square().sum(), z)
    assert g[0, 0].abs().sum() > 0 and g[0, 1:].abs().sum() == 0


def test_positions_enter_queries_and_keys_never_values():
    dec = _qformer(depth=1).decoder
    z = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(6))
    base = dec(z, GRID)
    with torch.no_grad():
        dec.latent_pos.normal_()
    assert (dec(z, GRID) - base).abs().max() > 1e-4  # token positions move the cross-attention weights
    with torch.no_grad():
        dec.blocks[0].cross_attn.q_proj.weight.zero_()  # uniform cross-attention: the keys stop mattering
        dec.blocks[0].cross_attn.q_proj.bias.zero_()
        flat = dec(z, GRID)
        dec.latent_pos.normal_()
    torch.testing.assert_close(dec(z, GRID), flat, rtol=0, atol=1e-6)  # the values carry no position


def test_regulariser_on_the_qformer_decoder_trains_up_to_its_layer_and_the_grid_is_fixed():
    model = SemanticallyRegularizedTokenizer(_qformer(), FrozenPatchEncoder(PATCH, DT, seed=1), teacher_dim=DT, layer=2)
    out = model(_images())
    out.reg_loss.backward()
    blocks = model.tokenizer.decoder.blocks

    def grad(m):
        return sum(p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None)

    assert grad(blocks[0]) > 0 and grad(blocks[1]) > 0 and grad(blocks[2]) == 0
    assert grad(model.tokenizer.encoder) > 0 and out.reconstruction.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="query positions are learned"):
        model.tokenizer.decoder(torch.zeros(1, 4, 4), (2, 2))
