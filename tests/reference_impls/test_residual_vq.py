import pytest
import torch

from reference_impls.residual_vq import (
    EncodecRVQ,
    ResidualVQ,
    kmeans,
    residual_quantize,
    sample_num_quantizers,
    sequence_to_stack,
    stack_to_sequence,
)
from reference_impls.vq import ema_update


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


def test_each_level_returns_the_code_row_it_subtracts_and_later_levels_refine_the_sum():
    g = torch.Generator().manual_seed(14)
    books = [torch.randn(9, 4, generator=g) for _ in range(3)]
    z = torch.randn(25, 4, generator=g)
    idx, codes = residual_quantize(z, books)
    for d, book in enumerate(books):
        assert torch.equal(codes[d], book[idx[:, d]])  # e_d(k_d), the row of level d's own codebook
    z_hat = sum(codes)  # (N, C)
    rvq_err = (z - z_hat).pow(2).sum(1)
    first_err = (z - codes[0]).pow(2).sum(1)
    assert rvq_err.mean() < first_err.mean()  # the later levels refine the first level's code


def test_lookup_hooks_choose_the_codes_from_the_running_residual_instead_of_euclidean_search():
    # A cosine lookup (DAC's choice) at every level: the indices must be the cosine argmax of the
    # residual r_{d-1} = z - sum_{i<d} e_i(k_i), not the Euclidean nearest code.
    g = torch.Generator().manual_seed(15)
    books = [torch.randn(8, 3, generator=g) * torch.rand(8, 1, generator=g) * 4 for _ in range(3)]
    z = torch.randn(30, 3, generator=g)

    def cosine(book):
        return lambda r: (
            torch.nn.functional.normalize(r, dim=1) @ torch.nn.functional.normalize(book, dim=1).T
        ).argmax(1)

    idx, codes = residual_quantize(z, books, lookups=[cosine(b) for b in books])
    r = z.clone()
    for d, book in enumerate(books):
        assert torch.equal(idx[:, d], cosine(book)(r))
        assert torch.equal(codes[d], book[idx[:, d]])
        r = r - book[idx[:, d]]
    euclid, _ = residual_quantize(z, books)
    assert not torch.equal(idx, euclid)  # the hook really replaced the search


def test_codebook_loss_sums_the_level_errors_against_the_running_residual():
    # codebook = sum_d ||sg[r_{d-1}] - e_d(k_d)||^2 (mean over elements), r_0 = z, r_d = r_{d-1} - e_d(k_d)
    rvq = _rvq(depth=3, shared=False, beta=0.5)
    z = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(16))
    out = rvq(z)
    r, by_hand = z, 0.0
    for d in range(3):
        e = rvq.codebook[d][out.indices[..., d]].movedim(-1, 1)  # (B, C, H, W)
        by_hand = by_hand + ((r - e) ** 2).mean()
        r = r - e
    assert torch.allclose(out.codebook_loss, by_hand, atol=1e-6)
    assert torch.allclose(out.loss, out.codebook_loss + 0.5 * out.commitment_loss, atol=1e-6)
    out.codebook_loss.backward()
    assert rvq.codebook.grad[:3].abs().sum() > 0  # the codebook loss trains the codebooks


def test_defaults_are_rq_vae_one_shared_codebook_and_commitment_weight_a_quarter():
    rvq = ResidualVQ(16, 3, 4, generator=torch.Generator().manual_seed(17))
    assert rvq.codebook.shape == (1, 16, 3)
    out = rvq(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(18)))
    # beta = 0.25, kakaobrain/rq-vae-transformer's latent_loss_weight
    assert torch.allclose(out.loss, out.codebook_loss + 0.25 * out.commitment_loss, atol=1e-6)


def test_perplexity_is_the_exp_entropy_of_the_first_level_code_usage():
    rvq = _rvq(depth=3, num_codes=8)
    out = rvq(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(19)))
    p = torch.bincount(out.indices[..., 0].reshape(-1), minlength=8).double() / 72
    p = p[p > 0]
    assert torch.allclose(out.perplexity.double(), torch.exp(-(p * p.log()).sum()), rtol=1e-5)
    assert 1.0 < out.perplexity <= 8.0


def test_codebooks_and_dropout_draws_depend_only_on_the_generator_passed_in():
    def run(global_seed):
        torch.manual_seed(global_seed)  # the global RNG must not matter
        draws = [sample_num_quantizers(8, torch.Generator().manual_seed(20)) for _ in range(3)]
        g = torch.Generator().manual_seed(21)
        draws += [sample_num_quantizers(8, g) for _ in range(30)]
        rvq = _rvq(depth=6, shared=False, quantizer_dropout=True, seed=22)
        z = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(23))
        depths = [rvq(z).indices.shape[-1] for _ in range(30)]
        return draws, depths, rvq.codebook.detach().clone()

    draws_a, depths_a, book_a = run(0)
    draws_b, depths_b, book_b = run(1)
    assert draws_a == draws_b and depths_a == depths_b and torch.equal(book_a, book_b)
    assert len(set(draws_a[:3])) == 1  # one seed, one draw


def test_n_q_outside_one_to_depth_is_refused_with_the_allowed_range():
    rvq = _rvq(depth=4)
    z = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(24))
    for bad in (0, 5):
        with pytest.raises(ValueError, match=rf"n_q must be in \[1, 4\], got {bad}"):
            rvq(z, n_q=bad)


# ----------------------------------------------------------------------------- EnCodec's released form


def _both(depth=3, num_codes=8, dim=4):
    """The two forms with the same per-level codebooks (the released one marked as initialised)."""
    ours = _rvq(depth=depth, shared=False, num_codes=num_codes, dim=dim)
    released = EncodecRVQ(num_codes, dim, depth)
    with torch.no_grad():
        released.codebook.copy_(ours.codebook)
        released.embed_sum.copy_(ours.codebook)
        released.cluster_size.fill_(1.0)
        released.inited.fill_(True)
    return ours, released


def test_kmeans_is_lloyds_algorithm_from_rows_of_the_batch_and_keeps_empty_clusters_in_place():
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    means, bins = kmeans(x, 5, iters=4, generator=torch.Generator().manual_seed(1))
    # core_vq.kmeans by hand: start at rows randperm(N)[:K], then assign / average, empty clusters stay
    m = x[torch.randperm(30, generator=torch.Generator().manual_seed(1))[:5]]
    for _ in range(4):
        assign = ((x[:, None] - m[None]) ** 2).sum(-1).argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=5)
        m = torch.stack([x[assign == k].mean(0) if counts[k] else m[k] for k in range(5)])
    torch.testing.assert_close(means, m, rtol=1e-6, atol=1e-6)
    assert torch.equal(bins, counts.float()) and bins.sum() == 30
    # a cluster nobody chooses keeps its starting row
    far = torch.cat([x, torch.full((1, 2), 100.0)])
    means, bins = kmeans(far, 31, iters=2, generator=torch.Generator().manual_seed(2))
    assert (bins == 1).all()  # 31 rows, 31 clusters started at the 31 rows: each keeps its own


def test_released_form_gives_the_same_codes_values_and_commitment_per_level_as_the_partial_sums_form():
    ours, released = _both()
    z = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(3))
    a, b = ours.eval()(z), released.eval()(z)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(b.z_q, a.z_q, rtol=0, atol=1e-6)
    # ||r_{d-1} - q_d||^2 = ||z - zhat^(d)||^2: the released loss is the mean of ours' summed terms
    torch.testing.assert_close(b.commitment_loss, a.commitment_loss / 3, rtol=1e-6, atol=0)
    torch.testing.assert_close(b.loss, b.commitment_loss)  # commitment_weight 1, no codebook term


def test_released_form_hands_the_encoder_only_level_ones_commitment_the_partial_sums_form_every_level():
    ours, released = _both()
    z = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(4))
    g = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(5))
    grads, outs = [], []
    for q in (ours.train(), released.train()):
        x = z.clone().requires_grad_(True)
        out = q(x)
        ((out.z_q * g).sum() + out.loss).backward()
        grads.append(x.grad)
        outs.append(out)
    n = z.numel()  # N C: the mean in every squared error
    partial = outs[0].partial_sums
    by_hand_ours = g + 0.25 * sum(2 * (z - p) / n for p in partial)  # beta sum_d d||z - sg[zhat^(d)]||^2 / dz
    by_hand_released = g + 2 * (z - partial[0]) / n / 3  # only d = 1, divided by n_q (the mean)
    torch.testing.assert_close(grads[0], by_hand_ours, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], by_hand_released, rtol=1e-5, atol=1e-7)
    assert (grads[0] - grads[1]).abs().max() > 1e-3  # the forms differ in the encoder gradient only
    torch.testing.assert_close(outs[0].z_q, outs[1].z_q, rtol=0, atol=1e-6)


def test_first_training_batch_initialises_each_level_by_kmeans_of_its_input_then_takes_one_ema_step():
    k, dim = 6, 3
    released = EncodecRVQ(k, dim, 2, kmeans_iters=5, generator=torch.Generator().manual_seed(7)).train()
    z = torch.randn(2, dim, 20, generator=torch.Generator().manual_seed(6))
    out = released(z)
    g = torch.Generator().manual_seed(7)  # the draws the module makes, in the same order
    rows = z.movedim(1, -1).reshape(-1, dim)
    residual = rows
    for d in range(2):
        means, bins = kmeans(residual, k, iters=5, generator=g)
        idx = ((residual[:, None] - means[None]) ** 2).sum(-1).argmin(1)
        assert torch.equal(out.indices[..., d].reshape(-1), idx)  # coded with the k-means means
        counts = 0.99 * bins + 0.01 * torch.bincount(idx, minlength=k)  # EMA of the k-means counts
        sums = 0.99 * means + 0.01 * torch.zeros(k, dim).index_add_(0, idx, residual)
        smoothed = (counts + 1e-5) / (counts.sum() + k * 1e-5) * counts.sum()
        torch.testing.assert_close(released.cluster_size[d], counts)
        torch.testing.assert_close(released.codebook[d], sums / smoothed[:, None], rtol=1e-5, atol=1e-6)
        residual = residual - means[idx]
    assert released.inited.all()


def test_released_dead_code_expiry_is_overwritten_by_the_ema_step_of_the_same_call():
    """core_vq.EuclideanCodebook.forward: expire_codes_ writes batch rows into `embed` where the EMA count
    is below 2, then the EMA step sets embed = embed_avg / smoothed counts for every row, from buffers the
    expiry left alone. vq.ema_update is that step (tests/parity/test_parity_encodec.py checks it against
    the released code): after it, the expired and the untouched codebooks are equal."""
    k, dim = 8, 2
    g = torch.Generator().manual_seed(8)
    codebook, counts = torch.randn(k, dim, generator=g), torch.rand(k, generator=g) * 4
    embed_sum = codebook * counts[:, None]
    x = torch.randn(12, dim, generator=g)
    idx = ((x[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)  # chosen before the expiry, as released
    dead = counts < 2
    assert dead.any()

    def step(book, cnt, sums):
        book, cnt, sums = book.clone(), cnt.clone(), sums.clone()
        ema_update(book, cnt, sums, x, idx, 0.99, 1e-5)
        return book

    expired = torch.where(dead[:, None], x[:k], codebook)  # replace_: only `embed` changes
    torch.testing.assert_close(step(expired, counts, embed_sum), step(codebook, counts, embed_sum), rtol=0, atol=0)
    # vector-quantize-pytorch's replace also resets the count (to 1) and embed_avg (to the row): the codes move
    revived = step(expired, torch.where(dead, 1.0, counts), torch.where(dead[:, None], x[:k], embed_sum))
    assert (revived - step(codebook, counts, embed_sum))[dead].abs().max() > 1e-3
