import pytest
import torch
import torch.nn.functional as F

from reference_impls.ibq import IBQ, code_logits, index_backprop_one_hot
from reference_impls.vq import VectorQuantizer, nearest_code


def _ibq(k=64, d=8, seed=0, **kw):
    return IBQ(k, d, generator=torch.Generator().manual_seed(seed), **kw)


def _z(shape, seed, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), requires_grad=grad)


def _rows(z):
    return z.movedim(1, -1).reshape(-1, z.shape[1])


def test_forward_equals_nearest_code_vq_exactly_with_distance_logits():
    q = _ibq(logits="distance")
    z = _z((3, 8, 5, 5), 1)
    out = q(z)
    rows = _rows(z)
    k = nearest_code(rows, q.codebook.detach())
    assert torch.equal(out.indices.reshape(-1), k)
    assert torch.equal(_rows(out.z_q), q.codebook.detach()[k])  # bit for bit, not only close
    vq = VectorQuantizer(64, 8)
    with torch.no_grad():
        vq.codebook.copy_(q.codebook)
    codes_vq, idx_vq = vq.quantize_rows(rows)  # VQ's lookup before its straight-through z + sg[z_q - z]
    assert torch.equal(out.indices.reshape(-1), idx_vq) and torch.equal(_rows(out.z_q), codes_vq)
    assert torch.allclose(out.z_q, vq(z).z_q, atol=1e-6)


def test_dot_logits_pick_the_largest_inner_product_and_agree_with_nearest_code_for_unit_codes():
    q = _ibq()
    z = _z((2, 8, 6), 2)
    out = q(z)
    assert torch.equal(out.indices.reshape(-1), (_rows(z) @ q.codebook.detach().t()).argmax(1))
    assert torch.equal(_rows(out.z_q), q.codebook.detach()[out.indices.reshape(-1)])
    with torch.no_grad():
        q.codebook.copy_(F.normalize(q.codebook, dim=1))
    out = q(z)
    assert torch.equal(out.indices.reshape(-1), nearest_code(_rows(z), q.codebook.detach()))


def test_dot_and_distance_logits_disagree_when_code_norms_differ():
    # the official code scores by z . c: z = (1.2, 0) is nearest to c_0 = (1, 0) (distance 0.2 against 1.8)
    # but has the larger inner product with c_1 = (3, 0) (3.6 against 1.2)
    codes = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    z = torch.tensor([[1.2, 0.0]])
    assert code_logits(z, codes, "dot").argmax().item() == 1
    assert code_logits(z, codes, "distance").argmax().item() == 0
    with pytest.raises(ValueError):
        IBQ(4, 2, logits="cosine")


@pytest.mark.parametrize("logits", ["dot", "distance"])
def test_every_code_receives_gradient_each_step_where_plain_vq_gives_unselected_codes_none(logits):
    q = _ibq(k=64, logits=logits)
    z = _z((1, 8, 2, 2), 3)  # 4 rows choose at most 4 of the 64 codes
    w = _z((1, 8, 2, 2), 4)  # a stand-in decoder loss <w, z_q>
    out = q(z)
    (out.loss + (out.z_q * w).sum()).backward()
    assert (q.codebook.grad.norm(dim=1) > 0).all()
    vq = VectorQuantizer(64, 8)
    with torch.no_grad():
        vq.codebook.copy_(q.codebook)
    v = vq(z)
    (v.loss + (v.z_q * w).sum()).backward()
    unused = torch.ones(64, dtype=torch.bool)
    unused[v.indices.unique()] = False
    assert unused.sum() >= 60
    assert torch.equal(vq.codebook.grad[unused], torch.zeros(int(unused.sum()), 8))
    assert (vq.codebook.grad[~unused].norm(dim=1) > 0).all()


def test_gradients_equal_those_of_the_official_hard_minus_sg_soft_plus_soft_form():
    # quantize.py: one_hot = hard - soft.detach() + soft; z_q = one_hot C; the module adds (s - sg[s]) C to h C
    q = _ibq()
    z = _z((2, 8, 3, 3), 5, grad=True)
    w = _z((2, 8, 3, 3), 6)
    (q(z).z_q * w).sum().backward()
    g_z, g_c = z.grad.clone(), q.codebook.grad.clone()
    z.grad, q.codebook.grad = None, None
    hard, soft, _ = index_backprop_one_hot(code_logits(_rows(z), q.codebook))
    z_q = (hard - soft.detach() + soft) @ q.codebook  # (N, d)
    (z_q * _rows(w)).sum().backward()
    assert torch.allclose(g_z, z.grad, atol=1e-6) and torch.allclose(g_c, q.codebook.grad, atol=1e-6)


def test_encoder_gradient_passes_through_the_softmax_not_an_identity_copy():
    # d <w, s C> / dz = C^T (diag(s) - s s^T) C w for logits z C^T: no straight-through identity term
    q = _ibq(k=16, d=4)
    z = _z((1, 4, 1), 7, grad=True)
    w = _z((1, 4, 1), 8)
    (q(z).z_q * w).sum().backward()
    c = q.codebook.detach()
    s = (z.detach()[0, :, 0] @ c.t()).softmax(0)  # (K,)
    expected = c.t() @ (torch.diag(s) - torch.outer(s, s)) @ c @ w[0, :, 0]
    assert torch.allclose(z.grad[0, :, 0], expected, atol=1e-6)
    assert not torch.allclose(z.grad, w)


def test_quantisation_loss_follows_the_official_three_terms_and_their_detached_sides():
    # mean((z_q - z)^2) + mean((sg[z_q^h] - z)^2) + beta mean((z_q^h - sg[z])^2), beta = 0.25
    q = _ibq(beta=0.25)
    z = _z((2, 8, 4), 9, grad=True)
    q(z).loss.backward()
    g_z, g_c = z.grad.clone(), q.codebook.grad.clone()
    z.grad, q.codebook.grad = None, None
    rows = _rows(z)
    hard, soft, idx = index_backprop_one_hot(code_logits(rows, q.codebook))
    z_q = (hard - soft.detach() + soft) @ q.codebook
    z_q2 = hard @ q.codebook
    ref = ((z_q - rows) ** 2).mean() + ((z_q2.detach() - rows) ** 2).mean()
    ref = ref + 0.25 * ((z_q2 - rows.detach()) ** 2).mean()
    ref.backward()
    assert torch.allclose(g_z, z.grad, atol=1e-6) and torch.allclose(g_c, q.codebook.grad, atol=1e-6)
    out = q(z)
    zq = q.codebook.detach()[out.indices.reshape(-1)]
    assert torch.allclose(out.loss, 2.25 * F.mse_loss(zq, rows.detach()))  # all three terms share one value
