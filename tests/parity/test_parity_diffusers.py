"""Parity with Hugging Face diffusers (a test dependency, version 0.42.1).

Modules compared: reference_impls.ddpm (one ancestral step: posterior mean, both fixed variances,
the same noise), reference_impls.imagen (static and dynamic thresholding inside that step),
reference_impls.ddim (the previous timestep of a step), reference_impls.discrete_diffusion
(VQ-Diffusion's mask-and-replace rates and reverse step against VQDiffusionScheduler) and
reference_impls.dit (the adaLN-Zero block and its timestep/class conditioning against diffusers'
BasicTransformerBlock with norm_type="ada_norm_zero").

The schedulers' equal schedules and DDIM steps with the same noise are already compared in
tests/reference_impls/test_ddpm.py and test_ddim.py; these tests add what those do not.
diffusers keeps its schedules in float32 and ours in float64, hence tolerances of about 1e-5.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from reference_impls import ddpm, discrete_diffusion, imagen
from reference_impls.attention import sinusoidal_embedding
from reference_impls.ddim import make_timesteps, step_pairs
from reference_impls.dit import DiT, grid_positions, patchify

os.environ.setdefault("HF_HUB_OFFLINE", "1")
schedulers = pytest.importorskip("diffusers.schedulers", reason="diffusers is not installed (pip install -e '.[test]')")

T = 1000


def randn(seed: int, shape=(2, 3, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("variance", "variance_type"), [("posterior", "fixed_small"), ("beta", "fixed_large")])
def test_ddpm_step_equals_the_scheduler_step_with_the_same_noise(variance, variance_type):
    s = ddpm.Schedule(ddpm.linear_betas(T))
    peer = schedulers.DDPMScheduler(num_train_timesteps=T, clip_sample=False, variance_type=variance_type)
    peer.set_timesteps(T)
    for t in (999, 500, 10, 1, 0):
        x, eps = randn(t), randn(t + 1000)
        want = peer.step(eps, t, x, generator=torch.Generator().manual_seed(7)).prev_sample
        tt = torch.full((2,), t)
        # Alg. 2 with Eq. 11's mean (from eps) and sigma_t^2 = beta~_t (fixed_small) or beta_t (fixed_large)
        mean = ddpm.p_mean(s, x, tt, eps)
        # the posterior mean of Eq. 7 at x0_hat is the same mean: the scheduler computes it this way
        x0_hat = ddpm.predict_x0(s, x, tt, eps)
        torch.testing.assert_close(ddpm.q_posterior(s, x0_hat, x, tt)[0], mean, rtol=1e-5, atol=1e-5)
        sigma2 = (s.posterior_variance if variance == "posterior" else s.betas)[t]
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
        got = mean + (float(sigma2) ** 0.5 * z if t > 0 else 0)
        # the scheduler recovers beta_t as 1 - alpha_bar_t / alpha_bar_{t-1} in float32: at t = 10
        # (beta = 3.0e-4) that cancellation is 2.5e-4 off in relative terms, up to ~2e-4 in the step
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_thresholding_dynamic_only_with_sample_max_value_raised_the_default_one_is_static_clipping():
    # imagen.guided_step with w = 0 (eps_cond = eps_uncond) is one DDPM step with x0_hat thresholded.
    # diffusers' DDPMScheduler(thresholding=True) clamps s = quantile(|x0_hat|, 0.995) to
    # [1, sample_max_value]; its default sample_max_value = 1.0 fixes s = 1, i.e. static clipping.
    # Imagen's dynamic thresholding (ours) is s = max(1, quantile): the peer needs sample_max_value=inf.
    s = ddpm.Schedule(ddpm.linear_betas(T))
    t = 900
    x, eps = randn(1), randn(2)  # at t = 900 |x0_hat| reaches ~7: thresholding acts
    x0_raw = ddpm.predict_x0(s, x, torch.full((2,), t), eps)
    assert float(torch.quantile(x0_raw.reshape(2, -1).abs(), 0.995, dim=1).min()) > 2

    def peer_step(**kwargs):
        peer = schedulers.DDPMScheduler(num_train_timesteps=T, thresholding=True, **kwargs)
        peer.set_timesteps(T)
        return peer.step(eps, t, x, generator=torch.Generator().manual_seed(3))

    def ours(threshold):
        return imagen.guided_step(s, x, t, eps, eps, 0.0, threshold, 0.995, torch.Generator().manual_seed(3))

    dynamic, static = ours("dynamic"), ours("static")
    raised, default = peer_step(sample_max_value=math.inf), peer_step()
    torch.testing.assert_close(dynamic[1], raised.pred_original_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dynamic[0], raised.prev_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(static[1], default.pred_original_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(static[0], default.prev_sample, rtol=1e-5, atol=1e-5)
    assert float(default.pred_original_sample.abs().max()) == 1.0  # clipped, not rescaled
    assert (dynamic[1] - default.pred_original_sample).abs().max() > 0.1


def test_ddim_previous_timestep_is_the_next_list_entry_the_scheduler_uses_t_minus_T_over_S():
    # trailing spacing, S = 7 does not divide T: diffusers' DDIMScheduler.step goes from t to
    # t - T // S = t - 142, our step to the next entry of the same list it produced. Ours follows
    # the DDIM paper (the step is between consecutive entries of the subsequence tau).
    peer = schedulers.DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    peer.set_timesteps(7)
    ts = make_timesteps(T, 7, "trailing")
    assert ts == peer.timesteps.tolist() == [999, 856, 713, 570, 428, 285, 142]
    ours_prev = [p for _, p in step_pairs(ts)]
    peer_prev = [t - T // 7 for t in ts]  # scheduling_ddim.py: prev_timestep = timestep - T // S
    assert ours_prev == [856, 713, 570, 428, 285, 142, -1]
    assert peer_prev == [857, 714, 571, 428, 286, 143, 0]  # off the list at 6 of 7, the last to t = 0, not clean


K, STEPS = 16, 100  # data classes (the scheduler's num_vec_classes is K + 1 with [MASK]); VQ-Diffusion's T


def vq_diffusion_pair():
    alpha_bars, gamma_bars = discrete_diffusion.vq_diffusion_cumulative(STEPS)
    ours = discrete_diffusion.mask_and_replace_schedule(alpha_bars, gamma_bars, K)
    return ours, schedulers.VQDiffusionScheduler(num_vec_classes=K + 1, num_train_timesteps=STEPS)


def test_vq_diffusion_rates_equal_the_scheduler_one_index_later():
    # The scheduler's index i is the paper's step t = i + 1 (ours is 1-indexed, index 0 the identity).
    ours, peer = vq_diffusion_pair()
    a, b, c = discrete_diffusion.mask_and_replace_rates(ours)  # (T,) each, t = 1..T
    for mine, log_theirs in ((a, peer.log_at), (b, peer.log_bt), (c, peer.log_ct)):
        torch.testing.assert_close(mine.float().log(), log_theirs, rtol=1e-5, atol=1e-5)
    for mine, log_theirs in (
        (ours.keep_bar[1:], peer.log_cumprod_at[:STEPS]),
        (ours.spread_bar[1:], peer.log_cumprod_bt[:STEPS]),
        (ours.to_mask_bar[1:], peer.log_cumprod_ct[:STEPS]),
    ):
        torch.testing.assert_close(mine.float().log(), log_theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [1, 2, 50, 99, 100])
def test_vq_diffusion_reverse_step_equals_the_scheduler_q_posterior(t):
    # p(x_{t-1} | x_t) = sum_x0 q(x_{t-1} | x_t, x0) p~(x0 | x_t): ours in closed form over rows,
    # the scheduler in log space over (B, S, N) columns
    ours, peer = vq_diffusion_pair()
    g = torch.Generator().manual_seed(t)
    b, n = 3, 64
    xt = torch.randint(0, K + 1, (b, n), generator=g)  # data tokens and [MASK] (index K)
    xt[:, :8] = K  # at least some [MASK]
    log_p0 = torch.log_softmax(2 * torch.randn(b, n, K, generator=g), dim=-1)  # (B, N, K)
    probs = discrete_diffusion.p_reverse_probs(
        ours, discrete_diffusion.pad_to_states(log_p0.exp().double(), K + 1), xt, torch.full((b,), t)
    )  # (B, N, K + 1)
    log_theirs = peer.q_posterior(log_p0.transpose(1, 2), xt, t - 1)  # (B, K + 1, N)
    theirs = log_theirs.double().exp().transpose(1, 2)
    torch.testing.assert_close(theirs.sum(-1), torch.ones(b, n, dtype=torch.float64), rtol=0, atol=1e-4)
    torch.testing.assert_close(probs, theirs, rtol=1e-4, atol=1e-5)


def test_vq_diffusion_step_with_the_same_gumbel_noise_draws_the_same_tokens():
    ours, peer = vq_diffusion_pair()
    g = torch.Generator().manual_seed(5)
    xt = torch.randint(0, K + 1, (2, 64), generator=g)
    log_p0 = torch.log_softmax(torch.randn(2, 64, K, generator=g), dim=-1)
    t = 40
    want = peer.step(log_p0.transpose(1, 2), t - 1, xt, generator=torch.Generator().manual_seed(9)).prev_sample
    probs = discrete_diffusion.p_reverse_probs(
        ours, discrete_diffusion.pad_to_states(log_p0.exp().double(), K + 1), xt, torch.full((2,), t)
    )
    u = torch.rand((2, K + 1, 64), generator=torch.Generator().manual_seed(9)).transpose(1, 2)  # the peer's draw
    gumbel = -torch.log(-torch.log(u + 1e-30) + 1e-30)
    assert torch.equal((probs.clamp_min(1e-30).log() + gumbel).argmax(-1), want)


def ours_dit(dim=64, heads=4, classes=10, seed=0):
    torch.manual_seed(seed)
    model = DiT(input_size=8, patch=2, in_channels=4, dim=dim, depth=1, n_heads=heads, n_classes=classes)
    with torch.no_grad():  # adaLN-Zero starts at zero: randomise it so the comparison means something
        for p in model.blocks[0].ada.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def official_order(weight: torch.Tensor) -> torch.Tensor:
    """Columns of a Linear on our interleaved [sin_0, cos_0, sin_1, ...] embedding rearranged for the
    official DiT layout [cos_0 .. cos_{h-1}, sin_0 .. sin_{h-1}] (the same frequencies)."""
    return torch.cat([weight[:, 1::2], weight[:, 0::2]], dim=1)  # cos columns, then sin columns


def peer_block(model: DiT, classes: int):
    from diffusers.models.attention import BasicTransformerBlock

    ours = model.blocks[0]
    dim, heads = model.t_mlp[0].out_features, ours.attn.n_heads
    peer = BasicTransformerBlock(
        dim,
        heads,
        dim // heads,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=classes,
        norm_type="ada_norm_zero",
        attention_bias=True,
    ).eval()
    emb = peer.norm1.emb
    with torch.no_grad():
        emb.timestep_embedder.linear_1.weight.copy_(official_order(model.t_mlp[0].weight))
        emb.timestep_embedder.linear_1.bias.copy_(model.t_mlp[0].bias)
        emb.timestep_embedder.linear_2.load_state_dict(model.t_mlp[2].state_dict())
        emb.class_embedder.embedding_table.load_state_dict(model.y_emb.state_dict())
        peer.norm1.linear.load_state_dict(ours.ada[1].state_dict())
        for mine, theirs in (
            (ours.attn.q_proj, peer.attn1.to_q),
            (ours.attn.k_proj, peer.attn1.to_k),
            (ours.attn.v_proj, peer.attn1.to_v),
            (ours.attn.out_proj, peer.attn1.to_out[0]),
            (ours.mlp[0], peer.ff.net[0].proj),
            (ours.mlp[2], peer.ff.net[2]),
        ):
            theirs.load_state_dict(mine.state_dict())
    return peer


def test_dit_timestep_embedding_official_frequencies_are_spaced_by_one_over_half_diffusers_by_one_over_half_minus_one():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 17.0, 500.0, 999.0])
    dim, half = 256, 128
    # the official DiT (facebookresearch/DiT models.py, TimestepEmbedder.timestep_embedding):
    # freqs = exp(-log(10000) * i / half), embedding = [cos(t freqs), sin(t freqs)]
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    official = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=-1)
    ours = sinusoidal_embedding(t, dim)  # interleaved sin, cos of the same frequencies
    torch.testing.assert_close(torch.cat([ours[:, 1::2], ours[:, 0::2]], dim=1), official, rtol=0, atol=2e-4)
    shift0 = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    shift1 = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=1)  # DiT in diffusers
    torch.testing.assert_close(shift0, official, rtol=0, atol=2e-4)
    # diffusers' lowest frequency is 1 / 10000 exactly (exponent i / (half - 1) at i = half - 1), the
    # official one 10000^(-127/128); at t = 999 the last channels are far apart
    assert abs(float(torch.asin(shift1[1, -1])) - 1e-4) < 1e-9  # sin(1 * lowest frequency), t = 1
    assert abs(float(torch.asin(official[1, -1])) - 10000 ** (-127 / 128)) < 1e-9
    assert (shift1 - official).abs().max() > 0.5


def test_dit_block_and_conditioning_equal_diffusers_ada_norm_zero_block_with_the_official_frequencies():
    classes = 10
    model = ours_dit(classes=classes)
    peer = peer_block(model, classes)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 16, 64, generator=g)  # (B, T, D) tokens
    t, y = torch.tensor([3, 250, 999]), torch.tensor([0, 7, classes])  # the last: the null class
    cond = model.t_mlp(sinusoidal_embedding(t, 256)) + model.y_emb(y)  # c = emb(t) + emb(y), as DiT.forward
    ours = model.blocks[0](x, cond)
    peer.norm1.emb.time_proj.downscale_freq_shift = 0  # the official spacing of the frequencies
    theirs = peer(x, timestep=t, class_labels=y)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    peer.norm1.emb.time_proj.downscale_freq_shift = 1  # diffusers' DiT: another embedding of t
    assert (peer(x, timestep=t, class_labels=y) - ours).abs().max() > 1e-3


def test_dit_patch_embedding_is_the_stride_p_convolution_of_the_official_and_diffusers_patch_embed():
    from diffusers.models.embeddings import PatchEmbed

    model = ours_dit()
    peer = PatchEmbed(height=8, width=8, patch_size=2, in_channels=4, embed_dim=64, pos_embed_type=None)
    with torch.no_grad():  # Conv2d weight (D, C, p, p) -> Linear over patches flattened as (row, col, channel)
        peer.proj.weight.copy_(model.embed.weight.reshape(64, 2, 2, 4).permute(0, 3, 1, 2))
        peer.proj.bias.copy_(model.embed.bias)
    x = randn(3, shape=(2, 4, 8, 8))
    torch.testing.assert_close(model.embed(patchify(x, 2)), peer(x), rtol=1e-5, atol=1e-6)


def test_dit_positions_are_the_official_sin_cos_table_with_sin_and_cos_interleaved():
    # official get_2d_sincos_pos_embed (facebookresearch/DiT models.py, also diffusers'): the first half
    # of the channels encodes the column ("here w goes first"), the second the row, each as
    # [sin(pos omega_0 ..), cos(pos omega_0 ..)]; ours interleaves sin and cos within each half. A fixed
    # channel permutation: an equivalent network once every weight is permuted the same way.
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    g, dim = 16, 64
    theirs = get_2d_sincos_pos_embed(dim, g, base_size=g)  # base_size = grid: positions 0 .. g - 1, as DiT
    ours = grid_positions(g, g, dim)
    halves = [torch.cat([half[:, 0::2], half[:, 1::2]], dim=1) for half in ours.split(dim // 2, dim=1)]
    torch.testing.assert_close(torch.cat(halves, dim=1), theirs.float(), rtol=0, atol=1e-5)
    assert not torch.allclose(ours, theirs.float(), atol=0.1)
