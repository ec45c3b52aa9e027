"""Properties of reference_impls.dvae, the DALL-E discrete VAE: KL to the uniform prior, the argmax
grid of indices at evaluation, and gradients through the Gumbel-Softmax relaxation."""

import math

import pytest
import torch
import torch.nn.functional as F

from reference_impls.dvae import DVAE, kl_to_uniform
from reference_impls.gumbel import gumbel_softmax


def _model_and_images():
    torch.manual_seed(0)
    model = DVAE(in_ch=1, hidden=16, num_codes=16, code_dim=8)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return model, x


def test_kl_to_uniform_equals_closed_form():
    # q = softmax([0, log 3]) = (1/4, 3/4), K = 2: KL = 1/4 log(1/2) + 3/4 log(3/2)
    logits = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)  # (B, K, h, w)
    expected = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_to_uniform(logits).item() == pytest.approx(expected, rel=1e-5)
    # uniform logits: zero; a confident q over K codes: close to log K; summed over positions
    assert kl_to_uniform(torch.zeros(3, 8, 4, 4)).item() == pytest.approx(0.0, abs=1e-6)
    peaked = torch.full((1, 8, 2, 3), -30.0)
    peaked[:, 0] = 30.0
    assert kl_to_uniform(peaked).item() == pytest.approx(6 * math.log(8), rel=1e-5)


def test_eval_argmax_grid_lookup_equals_decoder_input():
    model, x = _model_and_images()
    model.eval()
    with torch.no_grad():
        out = model(x)
        grid = model.encode(x)
    assert grid.shape == (2, 4, 4) and grid.dtype == torch.int64  # a 2-D grid of indices per image
    assert torch.equal(grid, out.indices)
    torch.testing.assert_close(model.lookup(grid), out.decoder_input)  # the decoder sees codebook vectors
    torch.testing.assert_close(model.decoder(model.lookup(grid)), out.x_hat)


def test_training_input_is_a_mixture_of_codebook_vectors():
    model, x = _model_and_images()
    model.train()
    out = model(x, tau=1.0, generator=torch.Generator().manual_seed(2))
    hard = model.lookup(out.indices)
    assert (out.decoder_input - hard).abs().max() > 1e-3  # not a single code per position
    # the relaxed mixture stays inside the codebook's range (a convex combination)
    lo, hi = model.codebook.min(0).values, model.codebook.max(0).values
    z = out.decoder_input.permute(0, 2, 3, 1)  # (B, h, w, D)
    assert ((z >= lo - 1e-5) & (z <= hi + 1e-5)).all()


def test_gradients_reach_encoder_and_codebook_through_the_relaxation():
    model, x = _model_and_images()
    model.train()
    out = model(x, tau=1.0, generator=torch.Generator().manual_seed(2))
    recon_only = ((out.x_hat - x) ** 2).sum()  # no KL: the gradient must come through the sample
    recon_only.backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.codebook.grad.abs().sum() > 0


def test_elbo_loss_is_reconstruction_plus_beta_kl():
    model, x = _model_and_images()
    model.train()
    out = model(x, tau=1.0, generator=torch.Generator().manual_seed(2))
    l0 = model.loss(x, out, beta=0.0)
    l1 = model.loss(x, out, beta=2.5)
    torch.testing.assert_close(l1 - l0, 2.5 * kl_to_uniform(out.logits))


def test_kl_to_uniform_follows_the_dim_argument_for_any_layout():
    g = torch.Generator().manual_seed(3)
    channels_first = torch.randn(2, 5, 7, generator=g)  # (B, K, L)
    by_hand = (F.softmax(channels_first, 1) * F.log_softmax(channels_first, 1)).sum(1) + math.log(5)  # (B, L)
    expected = by_hand.sum(1).mean()
    torch.testing.assert_close(kl_to_uniform(channels_first), expected)
    torch.testing.assert_close(kl_to_uniform(channels_first.transpose(1, 2), dim=-1), expected)  # (B, L, K)
    torch.testing.assert_close(kl_to_uniform(channels_first.transpose(1, 2), dim=2), expected)


def test_kl_to_uniform_sums_over_positions_and_averages_over_the_batch():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 2, 2, generator=g)  # (B, K, h, w)
    per_image = [kl_to_uniform(logits[b : b + 1]) for b in range(3)]  # each a sum over its 4 positions
    torch.testing.assert_close(kl_to_uniform(logits), sum(per_image) / 3)
    # doubling the batch with a copy of itself leaves the batch mean unchanged
    torch.testing.assert_close(kl_to_uniform(torch.cat([logits, logits])), kl_to_uniform(logits))


def test_default_model_is_a_one_channel_dvae_of_width_32_with_16_codes_of_dim_16():
    torch.manual_seed(0)
    model = DVAE()
    assert model.num_codes == 16 and model.codebook.shape == (16, 16)  # K x D
    assert model.encoder[0].in_channels == 1 and model.encoder[0].out_channels == 32
    x = torch.rand(2, 1, 12, 8, generator=torch.Generator().manual_seed(5))
    out = model.eval()(x)
    assert out.logits.shape == (2, 16, 3, 2) and out.x_hat.shape == x.shape  # downsampling by 4, and back


def test_encoder_and_decoder_are_the_stated_relu_conv_stacks():
    # encoder: conv 4x4 /2 -> ReLU -> conv 4x4 /2 -> ReLU -> 1x1 conv to K logits
    # decoder: conv 3x3 -> ReLU -> transposed conv 4x4 x2 -> ReLU -> transposed conv 4x4 x2
    model, x = _model_and_images()
    e, d = model.encoder, model.decoder
    h = F.relu(F.conv2d(x, e[0].weight, e[0].bias, stride=2, padding=1))
    h = F.relu(F.conv2d(h, e[2].weight, e[2].bias, stride=2, padding=1))
    logits = F.conv2d(h, e[4].weight, e[4].bias)
    assert e[4].weight.shape[-2:] == (1, 1)
    torch.testing.assert_close(model.encoder(x), logits)
    z = torch.randn(2, 8, 4, 4, generator=torch.Generator().manual_seed(6))  # (B, D, h, w)
    y = F.relu(F.conv2d(z, d[0].weight, d[0].bias, padding=1))
    y = F.relu(F.conv_transpose2d(y, d[2].weight, d[2].bias, stride=2, padding=1))
    y = F.conv_transpose2d(y, d[4].weight, d[4].bias, stride=2, padding=1)
    assert y.shape == (2, 1, 16, 16)
    torch.testing.assert_close(model.decoder(z), y)


def test_training_input_mixes_the_codebook_by_the_relaxed_gumbel_softmax_sample():
    # z = sum_k y_k e_k with y = softmax((logits + g) / tau) over the K axis; the noise g comes
    # from the generator passed in only, and the default temperature is 1
    model, x = _model_and_images()
    model.train()
    for tau, kwargs in ((0.5, {"tau": 0.5}), (1.0, {})):
        torch.manual_seed(99)  # the global RNG must not matter
        out = model(x, generator=torch.Generator().manual_seed(7), **kwargs)
        y = gumbel_softmax(out.logits, tau, hard=False, generator=torch.Generator().manual_seed(7), dim=1)
        assert (y.max(dim=1).values < 0.999).any()  # a relaxed sample, not one-hot
        torch.testing.assert_close(out.decoder_input, torch.einsum("bkhw,kd->bdhw", y, model.codebook))
        torch.testing.assert_close(out.x_hat, model.decoder(out.decoder_input))


def test_loss_is_the_per_image_squared_error_plus_kl_and_beta_defaults_to_the_plain_elbo():
    model, x = _model_and_images()
    x = torch.cat([x, x[:, :, :, torch.arange(15, -1, -1)]])  # four different images
    model.train()
    out = model(x, generator=torch.Generator().manual_seed(8))
    recon = ((out.x_hat - x) ** 2).flatten(1).sum(1).mean()  # summed per image, averaged over the batch
    torch.testing.assert_close(model.loss(x, out, beta=0.0), recon)
    torch.testing.assert_close(model.loss(x, out), recon + kl_to_uniform(out.logits))  # beta = 1
