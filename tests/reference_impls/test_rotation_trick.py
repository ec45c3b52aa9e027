import pytest
import torch
import torch.nn.functional as F

from reference_impls.rotation_trick import RotationTrickVQ, rotate_to, rotation_matrix
from reference_impls.vq import VectorQuantizer


def _pair(seed: int, n: int = 32, d: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def test_rotation_maps_the_encoder_direction_onto_the_code_and_is_orthogonal():
    e, q = _pair(0, n=1)
    r = rotation_matrix(e[0], q[0])
    assert torch.allclose(r @ F.normalize(e[0], dim=0), F.normalize(q[0], dim=0), atol=1e-12)
    assert torch.allclose(r.T @ r, torch.eye(6, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(r).item() > 0  # a rotation, not a reflection


def test_forward_equals_plain_vq():
    g = torch.Generator().manual_seed(1)
    rot = RotationTrickVQ(64, 8, generator=g)
    plain = VectorQuantizer(64, 8)
    with torch.no_grad():
        plain.codebook.copy_(rot.codebook)
    z = torch.randn(2, 8, 5, 5, generator=g)
    a, b = rot(z), plain(z)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.z_q, b.z_q, atol=1e-5)
    assert torch.allclose(a.loss, b.loss) and torch.allclose(a.perplexity, b.perplexity)


def test_backward_gradient_is_the_closed_form_lambda_r_transpose_g():
    e, q = _pair(2)
    e.requires_grad_(True)
    g = torch.randn(32, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (rotate_to(e, q) * g).sum().backward()
    for n in range(32):
        lam = q[n].norm() / e[n].norm()
        expected = lam * rotation_matrix(e[n].detach(), q[n]).T @ g[n]
        assert torch.allclose(e.grad[n], expected, atol=1e-10)


def test_gradient_keeps_its_angle_to_the_code_where_straight_through_does_not():
    e, q = _pair(4)
    e.requires_grad_(True)
    g = torch.randn(32, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    (rotate_to(e, q) * g).sum().backward()

    def cos(a, b):
        return F.cosine_similarity(a, b, dim=1)

    assert torch.allclose(cos(e.grad, e.detach()), cos(g, q), atol=1e-10)
    # straight-through hands g to e unchanged: its angle to e differs from its angle to q
    assert (cos(g, e.detach()) - cos(g, q)).abs().max() > 0.5


def test_two_encoder_outputs_sharing_a_code_get_different_gradients_unlike_straight_through():
    q = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64).repeat(2, 1)
    e = torch.tensor([[0.9, 0.3, 0.0], [0.9, -0.3, 0.0]], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64).repeat(2, 1)  # same decoder gradient at the code
    (rotate_to(e, q) * g).sum().backward()
    assert not torch.allclose(e.grad[0], e.grad[1])
    # both are g rotated back by their own angle: equal length scaled by lambda, mirrored in y
    assert torch.allclose(e.grad[0, 1], e.grad[1, 1]) and torch.allclose(e.grad[0, 0], -e.grad[1, 0])


def test_gradient_equals_straight_through_when_the_code_equals_the_input():
    e, _ = _pair(6)
    e.requires_grad_(True)
    g = torch.randn(32, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    (rotate_to(e, e.detach().clone()) * g).sum().backward()
    assert torch.allclose(e.grad, g, atol=1e-10)


def test_gradient_keeps_its_radial_part_unlike_normalising_e_with_gradient():
    # cfifty/rotation_trick's VQGAN adaptation (table_3/rot_vqgan.py) rotates e/||e|| with gradient and
    # scales by ||q||: its gradient is orthogonal to e. Ours (and the paper's sg[lambda R] e) keeps the
    # radial part lambda <g, qhat>.
    e, q = _pair(8)
    e.requires_grad_(True)
    g = torch.randn(32, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (rotate_to(e, q) * g).sum().backward()
    radial = (e.grad * F.normalize(e.detach(), dim=1)).sum(1)
    expected = q.norm(dim=1) / e.detach().norm(dim=1) * (g * F.normalize(q, dim=1)).sum(1)
    assert torch.allclose(radial, expected, atol=1e-10)
    assert radial.abs().min() > 1e-3

    e2 = e.detach().clone().requires_grad_(True)
    u = e2 / e2.norm(dim=1, keepdim=True)
    variant = torch.stack([rotation_matrix(e[n].detach(), q[n]) @ u[n] for n in range(32)]) * q.norm(
        dim=1, keepdim=True
    )
    (variant * g).sum().backward()
    assert torch.allclose(
        (e2.grad * F.normalize(e.detach(), dim=1)).sum(1), torch.zeros(32, dtype=torch.float64), atol=1e-10
    )


def test_antipodal_input_still_returns_the_code():
    e = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[-0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(rotate_to(e, q), q)


def test_codebook_learns_from_the_codebook_loss_only():
    g = torch.Generator().manual_seed(10)
    rot = RotationTrickVQ(16, 4, generator=g)
    z = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    out = rot(z)
    out.z_q.sum().backward()
    assert z.grad.abs().sum() > 0
    assert rot.codebook.grad is None or rot.codebook.grad.abs().sum() == 0  # decoder gradient stops at the code
    rot(z).loss.backward()
    assert rot.codebook.grad.abs().sum() > 0


def test_lookup_returns_the_codes_forward_outputs():
    # The forward value is the code itself (lambda R e = q); lookup gives the same map from the indices.
    g = torch.Generator().manual_seed(11)
    rot = RotationTrickVQ(16, 4, generator=g)
    z = torch.randn(2, 4, 3, 5, generator=g)
    out = rot(z)
    assert torch.allclose(rot.lookup(out.indices), out.z_q, atol=1e-5)
    assert torch.equal(rot.lookup(out.indices)[:, :, 1, 2], rot.codebook[out.indices[:, 1, 2]].detach())


def test_codebook_and_commitment_losses_are_the_mean_squared_distance_to_the_nearest_code():
    # Eq. 3 without reconstruction: both terms equal mean ||z - q||^2 in value, total = (1 + beta) of it.
    g = torch.Generator().manual_seed(12)
    rot = RotationTrickVQ(16, 4, beta=0.4, generator=g)
    z = torch.randn(2, 4, 3, 3, generator=g)
    out = rot(z)
    rows = z.movedim(1, -1).reshape(-1, 4)
    distance = torch.cdist(rows, rot.codebook.detach()).min(dim=1).values.pow(2).sum() / rows.numel()
    assert out.codebook_loss.item() == pytest.approx(distance.item(), rel=1e-5)
    assert out.commitment_loss.item() == pytest.approx(distance.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(1.4 * distance.item(), rel=1e-5)


def test_the_generator_alone_sets_the_initial_codebook():
    torch.manual_seed(0)
    a = RotationTrickVQ(16, 4, generator=torch.Generator().manual_seed(13))
    torch.manual_seed(1)
    b = RotationTrickVQ(16, 4, generator=torch.Generator().manual_seed(13))
    assert torch.equal(a.codebook, b.codebook)


def test_rotation_matrix_is_in_the_inputs_dtype():
    e, q = _pair(14, n=1)
    for dtype in (torch.float64, torch.bfloat16):
        assert rotation_matrix(e[0].to(dtype), q[0].to(dtype)).dtype == dtype
