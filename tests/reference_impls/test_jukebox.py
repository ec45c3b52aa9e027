import pytest
import torch

from reference_impls.jukebox import (
    JukeboxVQVAE,
    RestartingQuantizer,
    UpsamplerConditioner,
    UpsamplerPrior,
    level_lengths,
)


def _quantizer_with_a_far_code(decay=0.5, threshold=0.3):
    q = RestartingQuantizer(4, 2, decay=decay, threshold=threshold, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        q.codebook[3] = torch.tensor([100.0, 100.0])  # never the nearest code of data near 0
        q.embed_sum[3] = q.codebook[3] * q.cluster_size[3]
    return q


def _is_a_row_of(v, rows):
    return bool(((rows - v).abs().sum(1) < 1e-6).any())


def test_a_code_unused_over_the_window_is_replaced_by_an_encoder_output():
    q = _quantizer_with_a_far_code()
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(2, 2, 16, generator=g)  # (B, D, T)
    q(z1)  # usage of code 3: 1 -> 0.5, still above 0.3
    assert torch.allclose(q.codebook[3], torch.tensor([100.0, 100.0]), rtol=1e-3)
    z2 = torch.randn(2, 2, 16, generator=g)
    q(z2)  # usage 0.5 -> 0.25 < 0.3: restart
    rows = z2.movedim(1, -1).reshape(-1, 2)
    assert _is_a_row_of(q.codebook[3], rows)
    # after the restart the code is a real candidate again: it is the nearest code of its row
    assert 3 in q(z2).indices.unique().tolist()


def test_used_codes_are_not_restarted_and_eval_mode_never_restarts():
    q = _quantizer_with_a_far_code(decay=0.5, threshold=0.3)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 2, 32, generator=g)
    q.eval()
    for _ in range(5):
        q(z)
    assert torch.equal(q.codebook[3], torch.tensor([100.0, 100.0]))  # no EMA, no restart at eval
    q.train()
    for _ in range(3):
        out = q(z)
    used = out.indices.unique()
    dead = q.restart_dead_codes(z.movedim(1, -1).reshape(-1, 2))
    assert not dead[used].any()


def test_restart_waits_for_the_ema_usage_to_cross_the_threshold():
    # with mu = 0.9 and threshold 0.5 an unused code (usage 1) survives while 0.9^n >= 0.5: 6 steps
    q = _quantizer_with_a_far_code(decay=0.9, threshold=0.5)
    g = torch.Generator().manual_seed(3)
    for step in range(1, 9):
        q(torch.randn(1, 2, 8, generator=g))
        far = bool(q.codebook[3].abs().min() > 50)
        assert far == (0.9**step >= 0.5), step


def test_level_lengths_follow_the_hop_lengths():
    assert level_lengths(1024, (8, 32, 128)) == [128, 32, 8]
    with pytest.raises(ValueError):
        level_lengths(1000, (8, 32, 128))
    torch.manual_seed(4)
    vq = JukeboxVQVAE(hops=(8, 32, 128), width=4, dim=4, num_codes=8, generator=torch.Generator().manual_seed(4))
    x = torch.randn(1, 1, 256)
    outs = vq(x)
    assert [q.indices.shape[1] for _, q in outs] == level_lengths(256, (8, 32, 128))
    for recon, _ in outs:  # every level decodes back to audio on its own
        assert recon.shape == x.shape


def test_upsampler_conditioning_is_aligned_in_time():
    torch.manual_seed(5)
    ratio = 4  # e.g. a level with hop 32 above a level with hop 8
    cond = UpsamplerConditioner(num_codes=8, dim=6, ratio=ratio)
    upper = torch.randint(0, 8, (1, 5), generator=torch.Generator().manual_seed(6))
    c = cond(upper)
    assert c.shape == (1, 20, 6)
    changed = upper.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 8
    moved = (cond(changed) - c).abs().sum(-1)[0] > 0  # (20,)
    assert moved.nonzero().flatten().tolist() == [8, 9, 10, 11]  # exactly t with t // 4 == 2


def test_upsampler_prior_is_causal_in_the_lower_level_and_reads_the_upper_level():
    torch.manual_seed(7)
    prior = UpsamplerPrior(num_codes=8, upper_codes=8, ratio=4, max_len=16, dim=16)
    low = torch.randint(0, 8, (1, 16), generator=torch.Generator().manual_seed(8))
    upper = torch.randint(0, 8, (1, 4), generator=torch.Generator().manual_seed(9))
    base = prior(low, upper)
    later = low.clone()
    later[0, 10:] = (later[0, 10:] + 1) % 8
    assert torch.allclose(prior(later, upper)[:, :11], base[:, :11], atol=1e-6)  # step t sees low[< t]
    up2 = upper.clone()
    up2[0, 3] = (up2[0, 3] + 1) % 8  # conditions t = 12 .. 15
    out = prior(low, up2)
    assert torch.allclose(out[:, :12], base[:, :12], atol=1e-6)
    assert not torch.allclose(out[:, 12:], base[:, 12:])


def test_defaults_are_the_released_hyperparameters():
    # The note's key numbers (openai/jukebox hparams.py, bottleneck.py): hops 8 / 32 / 128, EMA decay 0.99,
    # restart threshold 1.0.
    torch.manual_seed(10)
    vq = JukeboxVQVAE()
    assert vq.hops == (8, 32, 128) and [lvl.hop for lvl in vq.levels] == [8, 32, 128]
    for q in [lvl.quantizer for lvl in vq.levels] + [RestartingQuantizer(4, 2)]:
        assert (q.decay, q.threshold) == (0.99, 1.0)


def test_a_hop_that_is_not_a_power_of_two_is_refused():
    with pytest.raises(ValueError, match=r"^hop lengths must be powers of two$"):
        JukeboxVQVAE(hops=(6,))


def test_a_level_halves_the_time_log2_hop_times_and_doubles_it_back():
    torch.manual_seed(11)
    vq = JukeboxVQVAE(hops=(8,), width=4, dim=6, num_codes=8).eval()  # no EMA step between the two reads
    level = vq.levels[0]
    strided = [m for m in level.encoder.modules() if isinstance(m, torch.nn.Conv1d) and m.stride == (2,)]
    transposed = [m for m in level.decoder.modules() if isinstance(m, torch.nn.ConvTranspose1d)]
    assert len(strided) == 3 == len(transposed)
    x = torch.randn(2, 1, 64)
    recon, q = level(x)
    assert recon.shape == x.shape and q.z_q.shape == (2, 6, 8)  # dim channels at T / hop
    assert [codes.shape for codes in vq.encode(x)] == [(2, 8)]
    assert torch.equal(vq.encode(x)[0], q.indices)


def test_upsampler_loss_is_the_mean_nll_of_its_logits():
    torch.manual_seed(12)
    prior = UpsamplerPrior(num_codes=8, upper_codes=8, ratio=4, max_len=16, dim=16)
    low = torch.randint(0, 8, (2, 16), generator=torch.Generator().manual_seed(13))
    upper = torch.randint(0, 8, (2, 4), generator=torch.Generator().manual_seed(14))
    logp = prior(low, upper).log_softmax(-1)  # (B, T, K)
    nll = -logp.gather(-1, low[..., None]).mean()
    torch.testing.assert_close(prior.loss(low, upper), nll)


def test_the_first_prediction_reads_the_start_token_not_the_lower_codes():
    torch.manual_seed(15)
    prior = UpsamplerPrior(num_codes=8, upper_codes=8, ratio=4, max_len=16, dim=16)
    upper = torch.randint(0, 8, (1, 4), generator=torch.Generator().manual_seed(16))
    a = prior(torch.zeros(1, 16, dtype=torch.long), upper)
    b = prior(torch.full((1, 16), 7), upper)
    torch.testing.assert_close(a[:, 0], b[:, 0], rtol=0, atol=1e-6)
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-4


def test_level_lengths_are_integer_token_counts_and_a_ragged_clip_names_its_hop():
    lengths = level_lengths(1024, (8, 32, 128))
    assert all(type(n) is int for n in lengths)
    with pytest.raises(ValueError, match=r"^1000 samples are not a multiple of hop 32$"):
        level_lengths(1000, (8, 32, 128))


def test_the_generator_alone_sets_every_levels_initial_codebook():
    torch.manual_seed(0)
    a = JukeboxVQVAE(hops=(8, 32), width=4, dim=4, num_codes=8, generator=torch.Generator().manual_seed(17))
    torch.manual_seed(1)
    b = JukeboxVQVAE(hops=(8, 32), width=4, dim=4, num_codes=8, generator=torch.Generator().manual_seed(17))
    for la, lb in zip(a.levels, b.levels, strict=True):
        assert torch.equal(la.quantizer.codebook, lb.quantizer.codebook)


def test_each_level_quantiser_gets_the_given_decay_threshold_and_beta():
    torch.manual_seed(18)
    vq = JukeboxVQVAE(hops=(8,), width=4, dim=4, num_codes=8, decay=0.9, threshold=0.5)
    q = vq.levels[0].quantizer
    assert (q.decay, q.threshold) == (0.9, 0.5)
    rq = RestartingQuantizer(4, 2, beta=0.5).train()
    out = rq(torch.randn(2, 2, 6, generator=torch.Generator().manual_seed(19)))
    assert out.loss.item() == pytest.approx(0.5 * out.commitment_loss.item(), rel=1e-6)  # EMA: beta * commitment


def test_the_upsampler_block_reads_the_sum_of_token_position_and_conditioning_embeddings():
    torch.manual_seed(20)
    prior = UpsamplerPrior(num_codes=8, upper_codes=8, ratio=4, max_len=16, dim=16)
    low = torch.randint(0, 8, (1, 16), generator=torch.Generator().manual_seed(21))
    upper = torch.randint(0, 8, (1, 4), generator=torch.Generator().manual_seed(22))
    seen = []
    prior.block.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    prior(low, upper)
    start = torch.full((1, 1), 8)
    expected = prior.tok(torch.cat([start, low[:, :-1]], dim=1)) + prior.pos[:16] + prior.cond(upper)
    torch.testing.assert_close(seen[0], expected)
