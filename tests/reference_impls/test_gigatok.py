import math

import pytest
import torch

from reference_impls.gigatok import (
    FeatureProjector,
    FrozenPatchEncoder,
    SemanticallyRegularizedTokenizer,
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
