import torch

from reference_impls.residual_vq import (
    ResidualVQ,
    residual_quantize,
    sample_num_quantizers,
    sequence_to_stack,
    stack_to_sequence,
)


def _rvq(depth=4, shared=True, num_codes=16, dim=3, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return ResidualVQ(num_codes, dim, depth, shared_codebook=shared, generator=g, **kw)


def test_residual_error_never_rises_with_depth_when_zero_is_a_code():
    # With the zero vector in the codebook, the nearest code of r is never farther than 0, so
    # ||r_d|| <= ||r_{d-1}|| must hold at every position and every depth.
    rvq = _rvq(depth=6, num_codes=32, dim=4)
    with torch.no_grad():
        rvq.codebook[0, 0].zero_()
    z = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    out = rvq(z)
    errors = torch.stack([(z - p).pow(2).sum(1) for p in out.partial_sums])  # (D, B, H, W)
    assert torch.all(errors[1:] <= errors[:-1] + 1e-6)
    assert errors[-1].mean() < errors[0].mean()  # and it actually falls on average


def test_each_level_picks_the_nearest_code_of_the_current_residual():
    g = torch.Generator().manual_seed(5)
    books = [torch.randn(7, 3, generator=g) for _ in range(3)]
    z = torch.randn(20, 3, generator=g)
    idx, _ = residual_quantize(z, books)
    r = z.clone()
    for d, book in enumerate(books):
        brute = ((r[:, None, :] - book[None]) ** 2).sum(-1).argmin(1)  # brute-force argmin
        assert torch.equal(idx[:, d], brute)
        r = r - book[brute]


def test_output_equals_the_sum_of_the_selected_codes():
    rvq = _rvq(depth=4)
    z = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    out = rvq(z)
    book = rvq.codebook[0]
    by_hand = sum(book[out.indices[..., d]] for d in range(4)).movedim(-1, 1)  # (B, C, H, W)
    assert torch.allclose(out.z_q, by_hand, atol=1e-6)
    assert torch.allclose(rvq.lookup(out.indices), out.z_q, atol=1e-6)


def test_shared_codebook_is_one_table_for_all_depths_and_separate_books_are_not():
    shared, separate = _rvq(depth=3, shared=True), _rvq(depth=3, shared=False)
    assert shared.codebook.shape[0] == 1 and separate.codebook.shape[0] == 3
    # Same code index at two depths gives the same vector only with a shared codebook.
    idx = torch.zeros(1, 1, 1, 2, dtype=torch.long)
    assert torch.allclose(shared.lookup(idx), 2 * shared.codebook[0, 0].view(1, -1, 1, 1))
    assert not torch.allclose(separate.lookup(idx), 2 * separate.codebook[0, 0].view(1, -1, 1, 1))


def test_code_stack_of_shape_b_h_w_d_round_trips_through_the_sequence():
    rvq = _rvq(depth=4)
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    out = rvq(z)
    assert out.indices.shape == (2, 8, 8, 4)
    seq = stack_to_sequence(out.indices)
    # depth is the inner axis: the first 4 tokens are the full stack of position (0, 0)
    assert torch.equal(seq[:, :4], out.indices[:, 0, 0, :])
    back = sequence_to_stack(seq, (8, 8), 4)
    assert torch.equal(back, out.indices)
    assert torch.allclose(rvq.lookup(back), out.z_q, atol=1e-6)


def test_straight_through_copies_the_decoder_gradient_to_the_encoder():
    rvq = _rvq(depth=3)
    z = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(8), requires_grad=True)
    w = torch.randn(1, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    (rvq(z).z_q * w).sum().backward()
    assert torch.allclose(z.grad, w)


def test_commitment_loss_sums_the_partial_sum_errors():
    rvq = _rvq(depth=3)
    z = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(10))
    out = rvq(z)
    by_hand = sum(((z - p) ** 2).mean() for p in out.partial_sums)
    assert torch.allclose(out.commitment_loss, by_hand, atol=1e-6)


def test_with_n_q_active_only_the_first_n_q_codebooks_are_used():
    rvq = _rvq(depth=4, shared=False, quantizer_dropout=True)
    z = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(11))
    full = rvq(z, n_q=4)
    part = rvq(z, n_q=2)
    assert part.indices.shape[-1] == 2
    assert torch.equal(part.indices, full.indices[..., :2])  # greedy levels are a prefix
    part.loss.backward()
    assert rvq.codebook.grad[:2].abs().sum() > 0
    assert torch.all(rvq.codebook.grad[2:] == 0)  # codebooks 3 and 4 untouched
    with torch.no_grad():
        rvq.codebook[2:].add_(100.0)  # changing unused codebooks changes nothing
    again = rvq(z, n_q=2)
    assert torch.equal(again.indices, part.indices) and torch.allclose(again.z_q, part.z_q)


def test_quantizer_dropout_samples_every_depth_uniformly_in_training_only():
    g = torch.Generator().manual_seed(12)
    draws = torch.tensor([sample_num_quantizers(4, g) for _ in range(4000)])
    counts = torch.bincount(draws, minlength=5)
    assert counts[0] == 0 and draws.max() == 4
    assert torch.all((counts[1:] - 1000).abs() < 120)  # about 1000 each
    rvq = _rvq(depth=4, shared=False, quantizer_dropout=True)
    z = torch.randn(1, 3, 5, generator=torch.Generator().manual_seed(13))
    seen = {rvq(z).indices.shape[-1] for _ in range(40)}
    assert seen == {1, 2, 3, 4}
    rvq.eval()
    assert rvq(z).indices.shape[-1] == 4  # all levels at inference unless told otherwise
