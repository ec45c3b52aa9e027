import functools
from itertools import pairwise

import pytest
import torch
import torch.nn as nn

from reference_impls.ar_prior import (
    Block,
    TokenPrior,
    filter_logits,
    kmeans,
    next_token_loss,
    pb_relaxed_attention,
    pb_relaxed_layer_norm,
    pixels_to_tokens,
    raster_flatten,
    sample,
    sample_from_logits,
    sample_from_probs,
    text_image_sequence,
    tokens_to_pixels,
    top_k_filter,
    top_p_filter,
)
from reference_impls.attention import KVCache, TransformerBlock, causal_mask, scaled_dot_product_attention


def tiny_prior(**kw):
    torch.manual_seed(0)
    return TokenPrior(vocab_size=11, dim=16, n_layers=2, n_heads=2, max_len=32, **kw)


def test_prior_is_causal_changing_token_t_leaves_earlier_logits_unchanged():
    model = tiny_prior().eval()
    x = torch.randint(0, 11, (2, 10), generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[:, 6] = (x2[:, 6] + 3) % 11
    a, b = model(x), model(x2)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-6)
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-4


def test_sandwich_and_pb_relax_prior_is_causal_too():
    model = tiny_prior(sandwich_ln=True, pb_relax_alpha=8.0).eval()
    x = torch.randint(0, 11, (1, 9), generator=torch.Generator().manual_seed(2))
    x2 = x.clone()
    x2[:, 4] = (x2[:, 4] + 1) % 11
    torch.testing.assert_close(model(x)[:, :4], model(x2)[:, :4], rtol=0, atol=1e-6)


def test_incremental_forward_with_cache_equals_full_forward():
    model = tiny_prior(sandwich_ln=True).eval()
    x = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(3))
    full = model(x)
    logits, cache = model.forward_incremental(x[:, :5])
    chunks = [logits]
    for t in range(5, 12):
        logits, cache = model.forward_incremental(x[:, t : t + 1], cache)
        chunks.append(logits)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)
    assert [len(layer) for layer in cache] == [12, 12]  # one KVCache per layer, appended in place


def test_incremental_forward_rejects_a_cache_of_another_depth():
    model = tiny_prior().eval()  # 2 layers
    for depth in (1, 3):  # a cache made for another model: one layer short, one layer too many
        with pytest.raises(ValueError):
            model.forward_incremental(torch.zeros(1, 3, dtype=torch.long), [KVCache() for _ in range(depth)])


def test_top_k_never_draws_outside_the_k_most_likely():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g)
    allowed = logits.topk(5, dim=-1).indices  # (64, 5)
    for _ in range(20):
        draw = sample_from_logits(top_k_filter(logits, 5), g)
        assert (allowed == draw[:, None]).any(dim=1).all()


def test_top_k_keeps_exactly_k_finite_logits_with_original_values():
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.5, 3.0]])
    out = top_k_filter(logits, 2)
    assert torch.isfinite(out).sum() == 2
    assert out[0, 4] == 3.0 and out[0, 1] == 2.0


def test_top_p_keeps_the_smallest_set_with_mass_at_least_p():
    probs = torch.tensor([[0.05, 0.4, 0.3, 0.15, 0.1]])
    logits = probs.log()
    # sorted: 0.4, 0.3 (0.7), 0.15 (0.85), 0.1 (0.95), 0.05
    assert torch.isfinite(top_p_filter(logits, 0.7)).tolist() == [[False, True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.71)).tolist() == [[False, True, True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.3)).tolist() == [[False, True, False, False, False]]


def test_top_p_boundary_keeps_a_set_whose_mass_equals_p_exactly_and_no_more():
    # Four equal logits: probabilities are exactly 0.25 and their partial sums 0.25, 0.5, 0.75 are exact
    # in floating point. The nucleus is the SMALLEST set with mass >= p, so at p = 0.5 two tokens
    # (mass exactly 0.5) suffice; a filter that waits for mass > p would keep three.
    logits = torch.zeros(1, 4)
    assert int(torch.isfinite(top_p_filter(logits, 0.5)).sum()) == 2
    assert int(torch.isfinite(top_p_filter(logits, 0.75)).sum()) == 3
    assert int(torch.isfinite(top_p_filter(logits, 0.5 + 1e-6)).sum()) == 3
    assert int(torch.isfinite(top_p_filter(logits, 1.0)).sum()) == 4
    assert int(torch.isfinite(top_p_filter(logits, 0.0)).sum()) == 1  # the most likely token always stays


def test_temperature_divides_the_logits_exactly_and_entropy_falls_with_it():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.0, 0.7]], dtype=torch.float64)
    entropies = []
    for tau in (4.0, 2.0, 1.0, 0.5, 0.25):
        probs = filter_logits(logits, temperature=tau).softmax(-1)
        torch.testing.assert_close(probs, (logits / tau).softmax(-1), rtol=1e-12, atol=0)  # p_i ~ exp(l_i / tau)
        entropies.append(float(-(probs * probs.log()).sum()))
    assert all(a > b for a, b in pairwise(entropies))  # strictly sharper as tau falls


def _constant_logit_prior(logits: torch.Tensor) -> TokenPrior:
    """A TokenPrior whose next-token logits are `logits` (V,) at every position whatever the input."""
    model = tiny_prior().double().eval()
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.zero_()
        model.ln_f.bias[0] = 1.0  # every final hidden state is e_0 ...
        model.head.weight.zero_()
        model.head.weight[:, 0] = logits  # ... so the head returns the fixed logits
    return model


def test_sampler_draws_from_the_tempered_filtered_distribution():
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0, -1.5, 2.0, 0.2, 0.1, -3.0, 0.8], dtype=torch.float64)
    model = _constant_logit_prior(logits)
    n = 4000
    for tau, top_k in ((0.5, None), (2.0, None), (1.0, 3)):
        out = sample(
            model,
            torch.zeros(n, 1, dtype=torch.long),
            1,
            temperature=tau,
            top_k=top_k,
            generator=torch.Generator().manual_seed(0),
        )[:, 1]
        want = filter_logits(logits, tau, top_k).softmax(-1)
        freq = torch.bincount(out, minlength=11).double() / n
        torch.testing.assert_close(freq, want, atol=0.03, rtol=0)
        # and token by token it is the shared categorical draw on those logits with the same generator
        same = sample_from_logits(filter_logits(logits.expand(n, 11), tau, top_k), torch.Generator().manual_seed(0))
        assert torch.equal(out, same)


def test_top_p_draws_only_from_the_nucleus_by_brute_force():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(32, 20, generator=g) * 2
    p = 0.8
    probs = logits.softmax(-1)
    for row in range(32):
        order = probs[row].argsort(descending=True)
        mass, nucleus = 0.0, set()
        for i in order.tolist():  # smallest prefix of the sorted list with mass >= p
            nucleus.add(i)
            mass += probs[row, i].item()
            if mass >= p:
                break
        kept = set(torch.isfinite(top_p_filter(logits[row : row + 1], p))[0].nonzero().flatten().tolist())
        assert kept == nucleus
    for _ in range(10):
        draw = sample_from_logits(top_p_filter(logits, p), g)
        assert torch.isfinite(top_p_filter(logits, p).gather(1, draw[:, None])).all()


def test_sampler_frequencies_match_the_softmax():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    counts = torch.bincount(sample_from_logits(logits, g), minlength=3).double() / 20000
    torch.testing.assert_close(counts, logits[0].double().softmax(-1), atol=0.015, rtol=0)


def test_cached_and_uncached_sampling_give_identical_tokens_for_one_seed():
    model = tiny_prior(sandwich_ln=True).double().eval()
    prefix = torch.tensor([[1, 2, 3], [4, 5, 6]])
    runs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(123)
        runs.append(sample(model, prefix, 15, temperature=1.3, top_k=6, top_p=0.9, generator=g, use_cache=use_cache))
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0][:, :3], prefix)


def test_vocab_range_restricts_sampled_ids():
    model = tiny_prior().eval()
    out = sample(model, torch.tensor([[0]]), 20, generator=torch.Generator().manual_seed(0), vocab_range=(6, 11))
    assert ((out[:, 1:] >= 6) & (out[:, 1:] < 11)).all()


def test_pb_relaxed_attention_equals_plain_attention_in_float64():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64) * 20 for _ in range(3))
    mask = causal_mask(7)
    torch.testing.assert_close(
        pb_relaxed_attention(q, k, v, mask, alpha=32.0),
        scaled_dot_product_attention(q, k, v, mask),
        rtol=1e-10,
        atol=1e-10,
    )


def test_pb_relaxed_attention_avoids_the_overflow_of_plain_scores_in_half_precision():
    # scores of about 1e5 overflow float16 (max 65504) in the plain form but not after dividing by alpha
    q = torch.full((1, 4, 8), 400.0, dtype=torch.float16)
    k = torch.full((1, 4, 8), 400.0, dtype=torch.float16)
    plain_scores = (q / 8**0.5) @ k.transpose(-2, -1)
    assert torch.isinf(plain_scores).any()
    v = torch.randn(1, 4, 8).half()
    out = pb_relaxed_attention(q, k, v, None, alpha=32.0)
    assert torch.isfinite(out).all()


def test_pb_relaxed_layer_norm_equals_layer_norm_without_epsilon():
    torch.manual_seed(0)
    norm = nn.LayerNorm(6, eps=0.0).double()
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(4, 6, dtype=torch.float64) * 1000
    torch.testing.assert_close(pb_relaxed_layer_norm(x, norm), norm(x), rtol=1e-10, atol=1e-10)


def test_next_token_loss_is_the_mean_negative_log_likelihood_of_the_next_token():
    model = tiny_prior().eval()
    x = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(4))
    logp = model(x[:, :-1]).log_softmax(-1)
    manual = -sum(logp[b, i, x[b, i + 1]] for b in range(2) for i in range(5)) / 10
    torch.testing.assert_close(next_token_loss(model, x), manual)


def test_palette_assignment_is_the_nearest_centroid_by_brute_force():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 4, 5, generator=g)
    palette, _ = kmeans(images.permute(0, 2, 3, 1).reshape(-1, 3), 6, generator=g)
    tokens = pixels_to_tokens(images, palette)  # (2, 20)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                d = ((palette - images[b, :, i, j]) ** 2).sum(-1)
                assert tokens[b, i * 5 + j] == d.argmin()
    recon = tokens_to_pixels(tokens, palette, 4, 5)
    torch.testing.assert_close(recon[0, :, 1, 2], palette[tokens[0, 7]])


def test_kmeans_centroids_are_the_means_of_their_members_and_recover_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    x = torch.cat([c + 0.1 * torch.randn(30, 3, generator=g) for c in centres])
    cents, labels = kmeans(x, 3, generator=torch.Generator().manual_seed(5))
    for j in range(3):
        torch.testing.assert_close(cents[j], x[labels == j].mean(0), rtol=0, atol=1e-5)
    assert len({tuple(labels[i * 30 : (i + 1) * 30].unique().tolist()) for i in range(3)}) == 3


def test_sequence_is_raster_order_row_by_row():
    grid = torch.arange(12).reshape(1, 3, 4)
    seq = raster_flatten(grid)
    for i in range(3):
        for j in range(4):
            assert seq[0, i * 4 + j] == grid[0, i, j]


def test_text_image_sequence_shifts_image_ids_past_the_text_vocabulary():
    seq = text_image_sequence(torch.tensor([[3, 1]]), torch.tensor([[0, 5, 2]]), text_vocab=10)
    assert seq.tolist() == [[3, 1, 10, 15, 12]]


def test_a_sequence_longer_than_max_len_is_refused_with_the_lengths():
    model = tiny_prior()
    with pytest.raises(ValueError, match="^sequence length 33 exceeds max_len 32$"):
        model(torch.zeros(1, 33, dtype=torch.long))
    logits, cache = model.forward_incremental(torch.zeros(1, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="^sequence length 33 exceeds max_len 32$"):
        model.forward_incremental(torch.zeros(1, 1, dtype=torch.long), cache)


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_categorical_draw_keeps_leading_shape_ignores_scale_and_never_draws_a_zero():
    probs = torch.tensor([0.0, 2.0, 0.0, 6.0], dtype=torch.float64).expand(4, 500, 4)  # unnormalised rows
    draw = sample_from_probs(probs, torch.Generator().manual_seed(0))
    assert draw.shape == (4, 500) and set(draw.unique().tolist()) <= {1, 3}
    freq = (draw == 3).double().mean()
    assert abs(float(freq) - 0.75) < 0.03  # 6 / (2 + 6)
    same = sample_from_logits(probs.log(), torch.Generator().manual_seed(0))
    assert torch.equal(draw, same)  # the logits draw is the same inverse-CDF draw


def test_cached_and_uncached_sampling_agree_with_cross_attention_to_a_context():
    torch.manual_seed(0)
    model = TokenPrior(vocab_size=11, dim=16, n_layers=2, n_heads=2, max_len=32, cross_attention=True).double().eval()
    ctx = torch.randn(2, 5, 16, dtype=torch.float64)
    prefix = torch.tensor([[1], [2]])
    runs = [
        sample(model, prefix, 8, generator=torch.Generator().manual_seed(3), use_cache=c, context=ctx)
        for c in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])
    other = sample(
        model, prefix, 8, generator=torch.Generator().manual_seed(3), context=torch.randn(2, 5, 16, dtype=torch.float64)
    )
    assert not torch.equal(runs[0], other)  # the context steers the tokens


def test_tokens_to_pixels_inverts_pixels_to_tokens_on_palette_colours():
    palette = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    ids = torch.tensor([[0, 1, 2, 1, 0, 2]])
    img = tokens_to_pixels(ids, palette, 2, 3)  # (1, 3, 2, 3)
    assert img.shape == (1, 3, 2, 3) and torch.equal(img[0, :, 0, 1], palette[1])
    assert torch.equal(pixels_to_tokens(img, palette), ids)


def test_cogview_options_put_sandwich_ln_and_pb_relaxation_into_every_block():
    plain = tiny_prior()
    assert all(
        isinstance(b.ln_attn_out, nn.Identity) and b.attn.attention is scaled_dot_product_attention and b.cross is None
        for b in plain.blocks
    )
    cog = tiny_prior(sandwich_ln=True, pb_relax_alpha=8.0, cross_attention=True)
    for b in cog.blocks:
        assert isinstance(b.ln_attn_out, nn.LayerNorm) and isinstance(b.ln_ffn_out, nn.LayerNorm)
        assert isinstance(b.attn.attention, functools.partial) and b.attn.attention.func is pb_relaxed_attention
        assert b.attn.attention.keywords == {"alpha": 8.0} and b.cross.attention.keywords == {"alpha": 8.0}
        assert b.layer_norm is pb_relaxed_layer_norm
    sandwich_only = tiny_prior(sandwich_ln=True)
    assert all(b.attn.attention is scaled_dot_product_attention for b in sandwich_only.blocks)


def test_filters_work_on_any_leading_shape_and_temperature_defaults_to_one():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filter_logits(logits), logits)
    for fn in (lambda x: top_p_filter(x, 0.6), lambda x: top_k_filter(x, 3)):
        rows = torch.stack([fn(r) for r in logits.reshape(6, 7)]).reshape(2, 3, 7)
        assert torch.equal(fn(logits), rows)


def test_the_draw_is_the_inverse_cdf_of_one_float64_uniform_per_row():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64).expand(300, 4)
    draw = sample_from_probs(probs, torch.Generator().manual_seed(7))
    u = torch.rand(300, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    want = (u >= torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)).sum(-1)  # F^{-1}(u)
    assert torch.equal(draw, want)


def test_next_token_loss_reads_the_context_and_kmeans_follows_its_generator():
    torch.manual_seed(0)
    model = TokenPrior(vocab_size=11, dim=16, n_layers=1, n_heads=2, max_len=32, cross_attention=True)
    tokens = torch.randint(0, 11, (2, 9))
    ctx = torch.randn(2, 4, 16)
    assert not torch.allclose(next_token_loss(model, tokens, ctx), next_token_loss(model, tokens, ctx + 1.0))
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))
    a = kmeans(x, 5, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(99)
    b = kmeans(x, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_kmeans_ends_with_each_used_centroid_at_the_mean_of_its_members():
    # rows 0..3 near the origin, row 4 far away; empty clusters and singletons have their own tests below
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [10.0, 10.0]])
    centroids, labels = kmeans(x, 3, n_iters=5, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=3)
    for j in range(3):
        if counts[j] > 0:
            torch.testing.assert_close(centroids[j], x[labels == j].mean(0))
    assert counts.sum() == len(x) and (counts > 0).sum() >= 2  # the far row and the near ones part


def placed(rows, generator_seed):
    """x whose rows are `rows` placed so that kmeans' seeded permutation visits them in the given order."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(generator_seed))
    x = torch.empty(len(rows), len(rows[0]))
    x[order] = torch.tensor(rows)
    return x


def test_kmeans_keeps_the_centroid_of_its_last_cluster_when_a_duplicate_start_empties_it():
    # starts: P, Q and P again; the tie sends both copies of P to cluster 0, so cluster 2 is empty
    x = placed([[5.0, 5.0], [0.0, 0.0], [5.0, 5.0], [6.0, 5.0], [0.0, 1.0]], 3)
    centroids, _ = kmeans(x, 3, n_iters=1, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(centroids[0], torch.tensor([16.0 / 3.0, 5.0]))  # mean of P, P, (6, 5)
    torch.testing.assert_close(centroids[1], torch.tensor([0.0, 0.5]))
    assert torch.equal(centroids[2], torch.tensor([5.0, 5.0]))  # kept, not the mean of nothing


def test_kmeans_moves_a_cluster_left_with_one_point_onto_that_point():
    # 1-D: starts 3 and 4; step 1 gives means 1.5 and 7; step 2 takes 4 over to the first cluster,
    # leaving 10 alone in the second, whose centroid must move from 7 to 10
    x = placed([[3.0], [4.0], [0.0], [10.0]], 1)
    centroids, labels = kmeans(x, 2, n_iters=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(centroids, torch.tensor([[7.0 / 3.0], [10.0]]))
    assert labels.tolist() == [0 if v < 5 else 1 for v in x[:, 0].tolist()]


def test_kmeans_runs_twenty_lloyd_iterations_by_default(monkeypatch):
    import reference_impls.ar_prior as ar_prior

    calls = []
    nearest = ar_prior.nearest_code
    monkeypatch.setattr(ar_prior, "nearest_code", lambda *a: (calls.append(1), nearest(*a))[1])
    kmeans(torch.randn(30, 2, generator=torch.Generator().manual_seed(0)), 3, generator=torch.Generator())
    assert len(calls) == 20 + 1  # one assignment per iteration, then the returned labels


def test_draws_are_made_in_float64_whatever_the_dtype_of_the_probabilities():
    # 1024 equal probabilities of 2^-10: exact in bfloat16, but a bfloat16 running sum stalls long
    # before 1, so a CDF built in the input's dtype would favour the first tokens
    probs = torch.full((512, 1024), 2.0**-10, dtype=torch.bfloat16)
    got = sample_from_probs(probs, torch.Generator().manual_seed(0))
    assert torch.equal(got, sample_from_probs(probs.double(), torch.Generator().manual_seed(0)))
    assert got.float().mean() > 400  # uniform over 0..1023: mean 511.5


def test_block_without_options_is_the_shared_transformer_block():
    torch.manual_seed(0)
    ref = TransformerBlock(16, 2).eval()
    block = Block(16, 2).eval()
    block.load_state_dict(ref.state_dict())  # strict: no Sandwich-LN, no cross-attention parameters
    # rows of size 1e-3: their variance is below LayerNorm's epsilon, where a PB-relaxed LN differs
    x = 1e-3 * torch.randn(2, 5, 16)
    torch.testing.assert_close(block(x), ref(x))
