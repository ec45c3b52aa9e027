import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from reference_impls import ddpm
from reference_impls.attention import sinusoidal_embedding
from reference_impls.latent_diffusion import (
    CrossAttention,
    KLAutoencoder,
    LatentDiffusion,
    ResBlock,
    SpatialTransformer,
    TinyUNet,
    diagonal_gaussian_sample,
    estimate_scale_factor,
    kl_to_standard_normal,
)


@pytest.mark.parametrize("num_down", [0, 1, 2, 3])
def test_latent_grid_is_image_size_divided_by_f_and_decoder_restores_it(num_down):
    torch.manual_seed(0)
    ae = KLAutoencoder(in_channels=3, latent_channels=4, hidden=8, num_down=num_down)
    f = ae.downsampling_factor
    assert f == 2**num_down
    x = torch.randn(2, 3, 16, 24)
    mean, logvar = ae.encode(x)
    assert mean.shape == (2, 4, 16 // f, 24 // f) and logvar.shape == mean.shape
    assert ae.decode(mean).shape == x.shape


def test_kl_term_equals_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    q = Normal(mean, (0.5 * logvar).exp())
    p = Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mean, logvar), expected)
    # zero exactly at the prior, positive elsewhere
    assert kl_to_standard_normal(torch.zeros(1, 5), torch.zeros(1, 5)).item() == 0.0
    assert (kl_to_standard_normal(mean, logvar) > 0).all()


def test_cross_attention_equals_softmax_formula_by_hand():
    torch.manual_seed(0)
    attn = CrossAttention(query_dim=6, context_dim=5, n_heads=2, head_dim=3)
    h, ctx = torch.randn(2, 7, 6), torch.randn(2, 4, 5)
    q, k, v = attn.to_q(h), attn.to_k(ctx), attn.to_v(ctx)  # (B, N, 6), (B, L, 6), (B, L, 6)
    heads = []
    for i in range(2):
        sl = slice(3 * i, 3 * i + 3)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(3), dim=-1)  # (B, N, L)
        heads.append(w @ v[..., sl])
    expected = attn.to_out(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(h, ctx), expected)


def test_cross_attention_responds_to_context_but_not_to_its_token_order():
    torch.manual_seed(0)
    attn = CrossAttention(query_dim=6, context_dim=5)
    h, ctx = torch.randn(1, 7, 6), torch.randn(1, 4, 5)
    out = attn(h, ctx)
    assert (attn(h, ctx + 1.0) - out).abs().max() > 1e-3
    torch.testing.assert_close(attn(h, ctx[:, [2, 0, 3, 1]]), out)  # a set of keys, no positions


def test_unet_prediction_depends_on_context():
    torch.manual_seed(0)
    unet = TinyUNet(latent_channels=2, ch=8, context_dim=3, num_steps=50)
    z, t = torch.randn(2, 2, 4, 4), torch.tensor([3, 40])
    ctx = torch.randn(2, 5, 3)
    assert (unet(z, t, ctx) - unet(z, t, torch.randn(2, 5, 3))).abs().max() > 1e-4


def test_scale_factor_gives_unit_variance_latents():
    torch.manual_seed(0)
    z = 7.0 * torch.randn(4, 4, 8, 8) + 0.1
    s = estimate_scale_factor(z)
    assert abs((s * z).std().item() - 1.0) < 1e-5


def test_seeded_latent_training_lowers_loss_and_leaves_first_stage_frozen():
    torch.manual_seed(0)
    ae = KLAutoencoder(in_channels=1, latent_channels=2, hidden=8, num_down=1)
    base = torch.randn(1, 1, 8, 8)
    x = base + 0.05 * torch.randn(8, 1, 8, 8)  # one shape with small variations: learnable
    ctx = torch.randn(8, 3, 4)
    with torch.no_grad():  # a near-deterministic posterior, as a trained KL-reg encoder has (tiny KL weight)
        ae.encoder[-1].weight[2:].zero_()
        ae.encoder[-1].bias[2:].fill_(-12.0)
        s = estimate_scale_factor(ae.encode(x)[0])
    model = LatentDiffusion(
        ae,
        TinyUNet(latent_channels=2, ch=8, context_dim=4, num_steps=50),
        ddpm.Schedule(ddpm.linear_betas(50, 1e-4, 0.2)),
        scale_factor=s,
    )
    ae_before = [p.clone() for p in ae.parameters()]

    def eval_loss() -> float:
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(model.loss(x, ctx, g).item() for _ in range(4)) / 4

    before = eval_loss()
    opt = torch.optim.Adam(model.unet.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(15):
        opt.zero_grad()
        model.loss(x, ctx, g).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before
    assert all(torch.equal(a, b) for a, b in zip(ae_before, ae.parameters(), strict=True))
    assert all(p.grad is None for p in ae.parameters())
    # sampling decodes a latent of shape (B, c, H/f, W/f) back to image size
    img = model.sample((2, 2, 4, 4), ctx[:2], torch.Generator().manual_seed(0))
    assert img.shape == (2, 1, 8, 8) and torch.isfinite(img).all()


def test_reparameterised_draw_is_mean_plus_std_times_the_generators_noise_in_the_latents_dtype():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    torch.manual_seed(5)  # the global RNG must not matter
    z = diagonal_gaussian_sample(mean, logvar, torch.Generator().manual_seed(7))
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, mean + torch.exp(0.5 * logvar) * noise)
    # and in law: N(mean, exp(logvar)) at one position, by 20000 draws
    draws = diagonal_gaussian_sample(
        torch.full((20000,), 1.5), torch.full((20000,), math.log(0.25)), torch.Generator().manual_seed(8)
    )
    assert abs(draws.mean().item() - 1.5) < 0.02 and abs(draws.std().item() - 0.5) < 0.01


def _deterministic_encoder(ae, mean_bias, logvar_bias):
    """Zero the last encoder conv so every position encodes to (mean_bias, logvar_bias) per channel."""
    c = ae.encoder[-1].out_channels // 2
    with torch.no_grad():
        ae.encoder[-1].weight.zero_()
        ae.encoder[-1].bias[:c].fill_(mean_bias)
        ae.encoder[-1].bias[c:].fill_(logvar_bias)


def test_encoder_logvar_is_clamped_to_ldms_range_of_minus_30_to_20():
    # CompVis/latent-diffusion ldm/modules/distributions/distributions.py clamps log sigma^2 to [-30, 20]
    torch.manual_seed(0)
    ae = KLAutoencoder(in_channels=1, latent_channels=2, hidden=8, num_down=1)
    x = torch.randn(1, 1, 4, 4)
    for raw, clamped in ((100.0, 20.0), (-100.0, -30.0), (19.5, 19.5), (-29.5, -29.5)):
        _deterministic_encoder(ae, 0.0, raw)
        assert torch.equal(ae.encode(x)[1], torch.full((1, 2, 2, 2), clamped))


def test_autoencoder_loss_is_mse_of_the_decoded_draw_plus_the_weighted_mean_kl():
    torch.manual_seed(0)
    ae = KLAutoencoder(in_channels=1, latent_channels=2, hidden=8, num_down=1)
    x = torch.randn(3, 1, 8, 8)
    mean, logvar = ae.encode(x)
    z = diagonal_gaussian_sample(mean, logvar, torch.Generator().manual_seed(2))
    recon = F.mse_loss(ae.decode(z), x)
    kl = kl_to_standard_normal(mean, logvar).mean()  # summed over (c, h, w), averaged over the batch
    torch.manual_seed(9)  # the generator alone draws the latent
    torch.testing.assert_close(ae.loss(x, kl_weight=0.5, generator=torch.Generator().manual_seed(2)), recon + 0.5 * kl)
    # default KL weight 1e-6 (CompVis/latent-diffusion configs/autoencoder/autoencoder_kl_32x32x4.yaml); a far-off
    # mean makes the KL large enough for the weight to show
    _deterministic_encoder(ae, 40.0, 0.0)
    mean, logvar = ae.encode(x)
    kl = kl_to_standard_normal(mean, logvar).mean()  # 0.5 * 40^2 * 2 * 4 * 4 = 25600
    recon = F.mse_loss(ae.decode(diagonal_gaussian_sample(mean, logvar, torch.Generator().manual_seed(3))), x)
    torch.testing.assert_close(ae.loss(x, generator=torch.Generator().manual_seed(3)), recon + 1e-6 * kl)


def test_default_autoencoder_maps_rgb_to_four_latent_channels_at_f_4():
    torch.manual_seed(0)
    ae = KLAutoencoder()
    x = torch.randn(1, 3, 16, 8)
    mean, logvar = ae.encode(x)
    assert ae.downsampling_factor == 4 and mean.shape == (1, 4, 4, 2) and logvar.shape == mean.shape
    assert ae.encoder[0].out_channels == 16 and ae.decode(mean).shape == x.shape


def test_cross_attention_projections_are_bias_free_with_two_heads_of_eight_by_default():
    # Sec. 3.3: Q = W_Q phi, K = W_K tau, V = W_V tau. A key bias would only add q . b_k to every score of a
    # query, which the softmax removes, so the missing biases are also checked directly.
    torch.manual_seed(0)
    attn = CrossAttention(query_dim=6, context_dim=5)
    assert attn.to_q.bias is None and attn.to_k.bias is None and attn.to_v.bias is None
    h, ctx = torch.randn(2, 7, 6), torch.randn(2, 4, 5)
    q, k, v = h @ attn.to_q.weight.T, ctx @ attn.to_k.weight.T, ctx @ attn.to_v.weight.T  # (B, N, 16), (B, L, 16)
    assert q.shape[-1] == 16
    heads = []
    for i in range(2):
        sl = slice(8 * i, 8 * i + 8)
        w = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(8), dim=-1)  # (B, N, L)
        heads.append(w @ v[..., sl])
    torch.testing.assert_close(attn(h, ctx), attn.to_out(torch.cat(heads, dim=-1)))
    # zero features give zero queries, hence uniform weights: the output is W_out(mean of the values) + b_out
    torch.testing.assert_close(attn(torch.zeros(2, 3, 6), ctx), attn.to_out(v.mean(1, keepdim=True)).expand(2, 3, 6))


def test_res_block_adds_the_time_embedding_between_two_norm_silu_convs_and_keeps_the_skip():
    torch.manual_seed(0)
    block = ResBlock(8, 12)
    x, temb = torch.randn(2, 8, 3, 5), torch.randn(2, 12)
    h = block.conv1(F.silu(block.norm1(x))) + block.temb(temb)[:, :, None, None]
    torch.testing.assert_close(block(x, temb), x + block.conv2(F.silu(block.norm2(h))))


def test_spatial_transformer_is_residual_cross_attention_per_position_with_no_token_mixing():
    torch.manual_seed(0)
    st = SpatialTransformer(8, 3)
    x, ctx = torch.randn(2, 8, 3, 5), torch.randn(2, 4, 3)
    tokens = x.permute(0, 2, 3, 1).reshape(2, 15, 8)  # (B, h*w, ch), raster order
    want = (tokens + st.attn(st.norm(tokens), ctx)).reshape(2, 3, 5, 8).permute(0, 3, 1, 2)
    out = st(x, ctx)
    torch.testing.assert_close(out, want)
    # tokens attend to the context only: changing one position changes the output at that position only
    x2 = x.clone()
    x2[:, :, 1, 2] += 1.0
    changed = (st(x2, ctx) - out).abs().amax(dim=(0, 1)) > 1e-6  # (h, w)
    assert changed[1, 2] and changed.sum() == 1


def test_unet_is_the_stated_down_cross_attention_up_path_with_a_skip():
    torch.manual_seed(0)
    unet = TinyUNet(latent_channels=2, ch=8, context_dim=3, num_steps=50)
    z, t, ctx = torch.randn(2, 2, 4, 6), torch.tensor([3, 40]), torch.randn(2, 5, 3)
    assert unet.temb_dim == 32  # 4 x ch, as in the DDPM and LDM UNets
    temb = unet.temb[2](F.silu(unet.temb[0](sinusoidal_embedding(t, 8))))  # Linear - SiLU - Linear, (B, 32)
    h0 = unet.down_block(unet.inp(z), temb)  # (B, ch, h, w)
    h = unet.mid_attn(unet.mid_block(unet.down(h0), temb), ctx)  # (B, ch, h/2, w/2)
    h = unet.up_block(unet.up(h), temb)
    m = unet.merge(torch.cat([h, h0], dim=1))
    head = unet.out  # GroupNorm - SiLU - conv
    eps = head[2](F.silu(F.group_norm(m, 4, head[0].weight, head[0].bias)))
    torch.testing.assert_close(unet(z, t, ctx), eps)


def test_default_unet_takes_four_latent_channels_and_an_8_dim_context_and_has_ldms_1000_steps():
    torch.manual_seed(0)
    unet = TinyUNet()
    assert unet.num_steps == 1000 and unet.ch == 16 and unet.temb_dim == 64
    z = torch.randn(1, 4, 4, 4)
    assert unet(z, torch.tensor([999]), torch.randn(1, 3, 8)).shape == z.shape


def _ldm(scale_factor=None):
    torch.manual_seed(0)
    ae = KLAutoencoder(in_channels=1, latent_channels=2, hidden=8, num_down=1)
    unet = TinyUNet(latent_channels=2, ch=8, context_dim=4, num_steps=20)
    schedule = ddpm.Schedule(ddpm.linear_betas(20, 1e-4, 0.2))
    if scale_factor is None:
        return LatentDiffusion(ae, unet, schedule)
    return LatentDiffusion(ae, unet, schedule, scale_factor=scale_factor)


def test_latents_are_scaled_draws_of_the_encoder_and_the_default_scale_is_one():
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    plain, scaled = _ldm(), _ldm(scale_factor=0.3)
    mean, logvar = plain.autoencoder.encode(x)
    draw = diagonal_gaussian_sample(mean, logvar, torch.Generator().manual_seed(2))
    torch.testing.assert_close(plain.encode_latents(x, torch.Generator().manual_seed(2)), draw)
    torch.testing.assert_close(scaled.encode_latents(x, torch.Generator().manual_seed(2)), 0.3 * draw)


def test_latent_loss_is_eps_loss_on_the_scaled_latents_drawn_from_one_generator():
    model = _ldm(scale_factor=0.5)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ctx = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)  # first the latent draw, then t and eps, from the same generator
    z0 = model.encode_latents(x, g)
    want = ddpm.eps_loss(model.schedule, lambda z_t, t: model.unet(z_t, t, ctx), z0, g)
    torch.manual_seed(4)  # the global RNG must not matter
    torch.testing.assert_close(model.loss(x, ctx, torch.Generator().manual_seed(3)), want)


def test_wrapping_freezes_the_first_stage_so_decoding_builds_no_graph():
    model = _ldm()
    assert not any(p.requires_grad for p in model.autoencoder.parameters())
    assert all(p.requires_grad for p in model.unet.parameters())
    assert not model.autoencoder.decode(torch.randn(1, 2, 4, 4)).requires_grad
