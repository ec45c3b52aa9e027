"""Properties of the shared quantiser reference_impls.vq, for VQ-VAE, VQ-VAE-2 (EMA) and ViT-VQGAN
(factorised, l2-normalised codes)."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.vq import FusedVQ, VectorQuantizer, ema_update, nearest_code, pairwise_sq_distances, vq_losses


def _grads_at_beta(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """d(codebook + beta * commitment)/d codebook and /d z_e, for fixed data and codes."""
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=4, beta=beta, generator=torch.Generator().manual_seed(1))
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)  # (B, D, h, w)
    vq(z_e).loss.backward()
    return vq.codebook.grad.clone(), z_e.grad.clone()


def test_straight_through_gives_encoder_the_decoder_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, dim=4, generator=torch.Generator().manual_seed(0))
    z_e = torch.randn(2, 4, 5, 5, requires_grad=True)  # (B, D, h, w)
    out = vq(z_e)
    upstream = torch.randn_like(out.z_q)  # any decoder gradient dL/dz_q
    (out.z_q * upstream).sum().backward()  # reconstruction path only
    assert torch.equal(z_e.grad, upstream)
    assert vq.codebook.grad is None or torch.count_nonzero(vq.codebook.grad) == 0


def test_codebook_gradient_does_not_depend_on_beta():
    g_code_small, _ = _grads_at_beta(0.25)
    g_code_large, _ = _grads_at_beta(4.0)
    assert torch.count_nonzero(g_code_small) > 0
    torch.testing.assert_close(g_code_small, g_code_large)


def test_encoder_gradient_of_vq_loss_scales_with_beta():
    _, g_enc_1 = _grads_at_beta(1.0)
    _, g_enc_3 = _grads_at_beta(3.0)
    assert torch.count_nonzero(g_enc_1) > 0
    torch.testing.assert_close(g_enc_3, 3.0 * g_enc_1)


def test_codebook_term_moves_only_codes_and_commitment_only_encoder():
    torch.manual_seed(0)
    z_e = torch.randn(6, 3, requires_grad=True)
    e = torch.randn(6, 3, requires_grad=True)  # the selected codes, one per row
    codebook_loss, commitment, _ = vq_losses(z_e, e, beta=0.25)
    g_ze, g_e = torch.autograd.grad(codebook_loss, (z_e, e), allow_unused=True, materialize_grads=True)
    assert torch.count_nonzero(g_ze) == 0 and torch.count_nonzero(g_e) > 0
    g_ze, g_e = torch.autograd.grad(commitment, (z_e, e), allow_unused=True, materialize_grads=True)
    assert torch.count_nonzero(g_e) == 0
    torch.testing.assert_close(g_ze, 2 * (z_e - e).detach() / z_e.numel())  # d mean((z_e - e)^2) / d z_e


def test_lookup_of_indices_equals_quantised_output():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=32, dim=8, generator=torch.Generator().manual_seed(0))
    out = vq(torch.randn(3, 8, 4, 5))
    assert out.indices.shape == (3, 4, 5)
    torch.testing.assert_close(vq.lookup(out.indices), out.z_q)
    assert len(out.indices.unique()) > 1  # a real lookup, not a single repeated code


def test_nearest_code_equals_brute_force_argmin():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 16, generator=g, dtype=torch.float64)
    codebook = torch.randn(64, 16, generator=g, dtype=torch.float64)
    brute = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1).argmin(dim=1)  # (N, K, D) on purpose
    assert torch.equal(nearest_code(z, codebook), brute)
    assert torch.equal(nearest_code(z, codebook, chunk=7), brute)  # chunks of 7 rows, with a short tail


def test_pairwise_sq_distances_are_the_squared_differences_summed_over_dimensions():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(50, 6, generator=g, dtype=torch.float64)
    codebook = torch.randn(11, 6, generator=g, dtype=torch.float64)
    brute = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)  # (N, K, D) on purpose
    torch.testing.assert_close(pairwise_sq_distances(z, codebook), brute, rtol=1e-12, atol=1e-12)


def test_nearest_code_of_no_rows_is_an_empty_int64_index():
    codes = nearest_code(torch.zeros(0, 4), torch.randn(5, 4))
    assert codes.shape == (0,) and codes.dtype == torch.int64


def test_ema_step_equals_hand_computed_closed_form():
    # K = 2 codes in D = 1; three vectors 1, 3 -> code 0 and 9 -> code 1; decay 0.5, eps 0.5.
    codebook = torch.tensor([[0.0], [10.0]])
    cluster_size = torch.tensor([1.0, 1.0])
    embed_sum = torch.tensor([[0.0], [10.0]])
    z = torch.tensor([[1.0], [3.0], [9.0]])
    indices = torch.tensor([0, 0, 1])
    ema_update(codebook, cluster_size, embed_sum, z, indices, decay=0.5, eps=0.5)
    # N = 0.5 * [1, 1] + 0.5 * [2, 1] = [1.5, 1.0];  m = 0.5 * [0, 10] + 0.5 * [4, 9] = [2.0, 9.5]
    # n = 2.5;  N' = (N + 0.5) / (2.5 + 2 * 0.5) * 2.5 = [10/7, 15/14];  e = m / N' = [1.4, 133/15]
    torch.testing.assert_close(cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(embed_sum, torch.tensor([[2.0], [9.5]]))
    torch.testing.assert_close(codebook, torch.tensor([[1.4], [133.0 / 15.0]]))


def test_ema_step_decays_the_count_of_a_code_no_vector_chose():
    # K = 3 codes in D = 1; 1, 3 -> code 0 and 9 -> code 1; code 2 (the last) is chosen by nobody.
    codebook = torch.tensor([[0.0], [10.0], [20.0]])
    cluster_size = torch.ones(3)
    embed_sum = codebook.clone()
    z = torch.tensor([[1.0], [3.0], [9.0]])
    ema_update(codebook, cluster_size, embed_sum, z, torch.tensor([0, 0, 1]), decay=0.5, eps=0.5)
    # N = 0.5 * [1, 1, 1] + 0.5 * [2, 1, 0] = [1.5, 1, 0.5];  m = 0.5 * [0, 10, 20] + 0.5 * [4, 9, 0] = [2, 9.5, 10]
    # n = 3;  N' = (N + 0.5) / (3 + 3 * 0.5) * 3 = [4/3, 1, 2/3];  e = m / N' = [1.5, 9.5, 15]
    torch.testing.assert_close(cluster_size, torch.tensor([1.5, 1.0, 0.5]))
    torch.testing.assert_close(embed_sum, torch.tensor([[2.0], [9.5], [10.0]]))
    torch.testing.assert_close(codebook, torch.tensor([[1.5], [9.5], [15.0]]))


def test_defaults_are_beta_0_25_decay_0_99_and_eps_1e_5():
    # beta 0.25 and decay 0.99: the Sonnet VQ-VAE example (papers/oord2017neural.md, numbers); eps 1e-5 and
    # decay 0.99 are also the defaults of rosinality/vq-vae-2-pytorch vqvae.py (Quantize)
    torch.manual_seed(0)
    out = VectorQuantizer(8, 4, generator=torch.Generator().manual_seed(0))(torch.randn(2, 4, 3, 3))
    torch.testing.assert_close(out.loss, out.codebook_loss + 0.25 * out.commitment_loss, rtol=0, atol=0)
    vq = VectorQuantizer(8, 4, ema=True, generator=torch.Generator().manual_seed(0))
    codebook, cluster_size, embed_sum = vq.codebook.clone(), vq.cluster_size.clone(), vq.embed_sum.clone()
    z_e = torch.randn(2, 4, 3, 3)
    out = vq(z_e)
    rows = z_e.movedim(1, -1).reshape(-1, 4)
    ema_update(codebook, cluster_size, embed_sum, rows, out.indices.reshape(-1), decay=0.99, eps=1e-5)
    torch.testing.assert_close(vq.cluster_size, cluster_size, rtol=0, atol=0)
    torch.testing.assert_close(vq.codebook, codebook, rtol=0, atol=0)
    torch.testing.assert_close(out.loss, 0.25 * out.commitment_loss, rtol=0, atol=0)


def test_ema_codes_move_without_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=4, ema=True, decay=0.9, generator=torch.Generator().manual_seed(0))
    assert "codebook" not in dict(vq.named_parameters())
    before = vq.codebook.clone()
    z_e = (torch.randn(4, 4, 6, 6) + 3.0).requires_grad_()  # data far from the initial codes
    out = vq(z_e)
    out.loss.backward()
    assert not vq.codebook.requires_grad and vq.codebook.grad is None
    moved = (vq.codebook - before).norm(dim=1) > 0
    assert moved.any()
    # every code that moved moved towards the data mean (3, 3, 3, 3)
    target = torch.full((4,), 3.0)
    assert ((vq.codebook[moved] - target).norm(dim=1) < (before[moved] - target).norm(dim=1)).all()
    # the loss is beta * commitment only (the codebook term is an exact 0) and gives the encoder a gradient
    torch.testing.assert_close(out.loss, vq.beta * out.commitment_loss)
    assert torch.equal(out.codebook_loss, torch.zeros(()))
    assert torch.count_nonzero(z_e.grad) > 0


def test_factorised_l2_lookup_equals_cosine_argmax():
    torch.manual_seed(0)
    vq = VectorQuantizer(
        num_codes=64, dim=32, code_dim=8, l2_normalize=True, generator=torch.Generator().manual_seed(0)
    )
    z_e = torch.randn(2, 32, 4, 4)  # (B, D, h, w)
    out = vq(z_e)
    rows = vq.in_proj(z_e.movedim(1, -1).reshape(-1, 32))  # (N, d), before normalisation
    cosine = F.normalize(rows, dim=1) @ F.normalize(vq.codebook, dim=1).t()  # (N, K)
    assert torch.equal(out.indices.reshape(-1), cosine.argmax(dim=1))
    # the Euclidean argmin on raw (unnormalised) vectors picks differently, so the option matters
    assert not torch.equal(nearest_code(rows, vq.codebook), cosine.argmax(dim=1))


def test_l2_normalised_commitment_loss_is_measured_between_unit_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 12, code_dim=6, l2_normalize=True, generator=torch.Generator().manual_seed(0))
    z_e = 3.0 * torch.randn(2, 12, 3, 4)  # rows far from unit length before the normalisation
    out = vq(z_e)
    rows = F.normalize(vq.in_proj(z_e.movedim(1, -1).reshape(-1, 12)), dim=1)  # (N, d), each of norm 1
    chosen = F.normalize(vq.codebook, dim=1)[out.indices.reshape(-1)]  # (N, d) the unit codes chosen
    torch.testing.assert_close(out.commitment_loss, F.mse_loss(rows, chosen))
    torch.testing.assert_close(out.codebook_loss, F.mse_loss(rows, chosen))


def _toy_perplexity(factorised: bool, seed: int = 0, steps: int = 60) -> float:
    """Train Linear encoder -> quantiser -> Linear decoder on a 32-cluster mixture; return code perplexity."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(32, 16, generator=g) * 3
    x = centres[torch.randint(0, 32, (512,), generator=g)] + 0.3 * torch.randn(512, 16, generator=g)  # (N, 16)
    torch.manual_seed(seed)
    enc, dec = nn.Linear(16, 32), nn.Linear(32, 16)
    vq = VectorQuantizer(
        64,
        32,
        code_dim=8 if factorised else None,
        l2_normalize=factorised,
        generator=torch.Generator().manual_seed(seed),
    )
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *vq.parameters()], lr=3e-3)
    for _ in range(steps):
        out = vq(enc(x)[:, :, None])  # rows as (N, D, 1) maps
        loss = F.mse_loss(dec(out.z_q[:, :, 0]), x) + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return vq(enc(x)[:, :, None]).perplexity.item()


def test_factorised_l2_codes_use_more_of_the_codebook_than_plain_vq():
    plain = _toy_perplexity(factorised=False)
    factorised = _toy_perplexity(factorised=True)
    print(f"codebook perplexity, K = 64: plain VQ {plain:.1f}, factorised + l2 {factorised:.1f}")
    assert factorised > 1.2 * plain


# the last shape has more positions per image (300) than one block takes (128): blocks split images
@pytest.mark.parametrize("shape, k", [((2, 8, 3, 5), 7), ((3, 4, 6), 5), ((2, 16, 4, 4), 33), ((3, 4, 20, 15), 6)])
def test_fused_path_equals_the_readable_path_in_value_and_every_gradient(shape, k):
    torch.manual_seed(0)
    ref = VectorQuantizer(k, shape[1]).double()
    fused = VectorQuantizer(k, shape[1], fused=True).double()
    fused.load_state_dict(ref.state_dict())
    z_ref = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    z_fused = z_ref.detach().clone().requires_grad_(True)
    a, b = ref(z_ref), fused(z_fused)
    w = torch.randn_like(a.z_q)
    # every output enters with its own weight, so each backward path is compared on its own
    (la, lb) = ((o.z_q * w).sum() + 3 * o.codebook_loss + 5 * o.commitment_loss + o.loss for o in (a, b))
    la.backward()
    lb.backward()
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(b.z_q, a.z_q, rtol=0, atol=1e-14)
    torch.testing.assert_close(lb, la, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(z_fused.grad, z_ref.grad, rtol=0, atol=1e-14)
    torch.testing.assert_close(fused.codebook.grad, ref.codebook.grad, rtol=0, atol=1e-14)
    torch.testing.assert_close(b.perplexity, a.perplexity)


def test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size():
    torch.manual_seed(1)
    z = torch.randn(5, 4, 3, 3, dtype=torch.float64)  # 5 images of 9 positions
    codebook = torch.randn(9, 4, dtype=torch.float64)
    results = []
    # (9, 4): blocks of 2 images x 4 positions against 4 codes (images, positions and codes all split,
    # with short tails, so the running minimum carries over two blocks of codes); (10,000, 10,000): one
    # block holds everything
    for block in ((9, 4), (10_000, 10_000)):
        z_e, codes = z.clone().requires_grad_(True), codebook.clone().requires_grad_(True)
        z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, codes, *block)
        w = torch.randn(z_q.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        ((z_q * w).sum() + 3 * codebook_loss + 5 * commitment).backward()
        results.append((z_q, codebook_loss, idx, z_e.grad, codes.grad))
    for small, whole in zip(*results, strict=True):
        torch.testing.assert_close(small, whole, rtol=1e-12, atol=1e-14)
    assert torch.equal(results[0][2].reshape(-1), nearest_code(z.movedim(1, -1).reshape(-1, 4), codebook))


def test_on_equal_distances_the_fused_path_picks_the_lower_code_index_as_argmin_does():
    # small integers, so every distance is exact in float64; code 4 repeats code 1 and, with blocks of 4
    # codes, lies in the second block: the running minimum must keep 1, as the argmin does
    codebook = torch.tensor([[5, 5], [1, 0], [4, 4], [-3, 3], [1, 0], [9, 9]], dtype=torch.float64)
    z = torch.tensor([[[1, 9, 0, -3, 2], [0, 9, 0, 2, 1]]], dtype=torch.float64)  # (B, D, M) = (1, 2, 5)
    idx = FusedVQ.apply(z, codebook, 256, 4)[3]
    rows = z.movedim(1, -1).reshape(-1, 2)
    assert torch.equal(idx.reshape(-1), nearest_code(rows, codebook))
    assert idx[0, 0] == 1  # z = (1, 0) is code 1 and code 4 exactly


def test_fused_path_writes_its_blocks_in_place_without_any_warning():
    torch.manual_seed(2)
    z, codebook = torch.randn(5, 4, 3, 3), torch.randn(9, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning for an out= tensor it had to resize
        for block in ((9, 4), (5, 2), (256, 1024)):
            FusedVQ.apply(z.clone().requires_grad_(True), codebook, *block)[0].sum().backward()


def test_fused_option_runs_the_whole_quantiser_as_one_autograd_node():
    torch.manual_seed(0)
    out = VectorQuantizer(8, 4, fused=True)(torch.randn(2, 4, 3, 3, requires_grad=True))
    node = out.z_q.grad_fn
    assert node.name() == "FusedVQBackward"
    assert out.codebook_loss.grad_fn is node and out.commitment_loss.grad_fn is node


def test_fused_path_refuses_options_it_does_not_cover():
    expected = r"^fused=True covers the plain gradient codebook only \(no ema, code_dim or l2_normalize\)$"
    for kw in ({"ema": True}, {"code_dim": 2}, {"l2_normalize": True}):
        with pytest.raises(ValueError, match=expected):
            VectorQuantizer(9, 4, fused=True, **kw)
