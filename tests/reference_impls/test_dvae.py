"""Properties of reference_impls.dvae, the DALL-E discrete VAE: KL to the uniform prior, the argmax
grid of indices at evaluation, and gradients through the Gumbel-Softmax relaxation."""

import math

import pytest
import torch

from reference_impls.dvae import DVAE, kl_to_uniform


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
