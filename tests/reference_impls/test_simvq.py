import torch
import torch.nn.functional as F

from reference_impls.simvq import SimVQ
from reference_impls.vq import VectorQuantizer


def _sgd_step(module, lr):
    """One plain gradient step (torch.optim's first step costs seconds of lazy imports)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def _simvq(k=64, d=8, seed=0, **kw):
    return SimVQ(k, d, generator=torch.Generator().manual_seed(seed), **kw)


def _z(shape, seed, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), requires_grad=grad)


def test_the_basis_c_receives_no_gradient_and_w_does():
    q = _simvq()
    assert "table" in dict(q.named_buffers())
    assert {n for n, _ in q.named_parameters()} == {"projector.weight", "projector.bias"}
    c0 = q.table.clone()
    out = q(_z((2, 8, 4, 4), 1))
    (out.loss + (out.z_q * _z(out.z_q.shape, 2)).sum()).backward()
    assert q.table.grad is None and not q.table.requires_grad
    assert q.projector.weight.grad.abs().min() > 0  # every entry of W is trained
    _sgd_step(q, 1.0)
    assert torch.equal(q.table, c0)


def test_basis_is_drawn_with_std_one_over_sqrt_d():
    # official: nn.init.normal_(embedding.weight, std=e_dim ** -0.5)
    q = SimVQ(20000, 16, generator=torch.Generator().manual_seed(3))
    assert abs(q.table.std().item() - 16**-0.5) < 0.005 and abs(q.table.mean().item()) < 0.005


def test_a_step_on_w_moves_the_unused_codes_too():
    q = _simvq(k=64)
    z = _z((1, 8, 2, 2), 4)  # 4 rows: at most 4 of the 64 codes are chosen
    before = q.codes().detach().clone()
    out = q(z)
    out.loss.backward()
    _sgd_step(q, 0.1)
    moved = (q.codes().detach() - before).norm(dim=1)  # (K,)
    unused = torch.ones(64, dtype=torch.bool)
    unused[out.indices.unique()] = False
    assert unused.sum() >= 60 and (moved[unused] > 1e-5).all()
    # the same step in plain VQ on the table C W: the unused rows get no gradient and stay put
    vq = VectorQuantizer(64, 8)
    with torch.no_grad():
        vq.codebook.copy_(before)
    vq(z).loss.backward()
    _sgd_step(vq, 0.1)
    assert torch.equal(vq.codebook[unused], before[unused])


def test_lookup_equals_plain_vq_on_the_table_c_w():
    q = _simvq()
    z = _z((3, 8, 5), 5)
    vq = VectorQuantizer(64, 8)
    with torch.no_grad():
        vq.codebook.copy_(q.codes())
    a, b = q(z), vq(z)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.z_q, b.z_q)
    assert torch.allclose(a.loss, b.loss) and torch.allclose(a.perplexity, b.perplexity)
    expected = F.linear(q.table, q.projector.weight, q.projector.bias)  # c_k W^T + b
    assert torch.allclose(q.codes(), expected)


def test_w_is_trained_by_the_codebook_term_and_the_encoder_by_beta_times_commitment():
    # released configs (legacy: false): beta * mean((sg[z_q] - z)^2) + mean((z_q - sg[z])^2)
    q = _simvq(beta=0.25)
    z = _z((2, 8, 6), 6, grad=True)
    out = q(z)
    out.loss.backward()
    zq = q.lookup(out.indices).detach()
    assert torch.allclose(z.grad, 0.25 * 2 * (z - zq).detach() / z.numel(), atol=1e-7)
    g_full = q.projector.weight.grad.clone()
    q.zero_grad()
    F.mse_loss(F.embedding(out.indices.reshape(-1), q.codes()), z.detach().movedim(1, -1).reshape(-1, 8)).backward()
    assert torch.allclose(g_full, q.projector.weight.grad, atol=1e-7)


def test_legacy_puts_beta_on_the_codebook_term_instead():
    z = _z((2, 8, 6), 7, grad=True)
    new, old = _simvq(beta=0.25), _simvq(beta=0.25, legacy=True)
    new(z).loss.backward()
    g_new = z.grad.clone()
    z.grad = None
    old(z).loss.backward()
    assert torch.allclose(z.grad, g_new / 0.25, atol=1e-6)  # commitment weight 1 instead of beta
    assert torch.allclose(old.projector.weight.grad, 0.25 * new.projector.weight.grad, atol=1e-7)


def test_straight_through_gives_the_encoder_the_decoder_gradient():
    q = _simvq()
    z = _z((2, 8, 3), 8, grad=True)
    w = _z((2, 8, 3), 9)
    (q(z).z_q * w).sum().backward()
    assert torch.equal(z.grad, w)
