"""Properties of reference_impls.vqvae: the one-level VQ-VAE learns, and the two-level VQ-VAE-2
conditions its bottom codes on the top codes and decodes from both."""

import torch
import torch.nn.functional as F

from reference_impls.vqvae import VQVAE, VQVAE2, fit, toy_images


def test_toy_vqvae_cuts_reconstruction_error_by_80_percent():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = toy_images(256, size=8, generator=g)  # (256, 1, 8, 8) blobs and stripes
    model = VQVAE(hidden=32, num_codes=32, code_dim=16, downsample=1, generator=g)  # 4 x 4 token grid

    def mse() -> float:
        model.eval()
        with torch.no_grad():
            return F.mse_loss(model(data)[0], data).item()

    before = mse()
    model.init_codes(data, generator=g)
    fit(model, data, steps=60, lr=5e-3, batch=32, generator=g)
    after = mse()
    mean_image = F.mse_loss(data.mean(0, keepdim=True).expand_as(data), data).item()
    print(f"reconstruction MSE {before:.4f} -> {after:.4f}; predicting the mean image gives {mean_image:.4f}")
    assert after < 0.2 * before
    assert after < 0.5 * mean_image  # the codes carry the image, not only its average
    model.eval()
    with torch.no_grad():
        _, q = model(data)
        torch.testing.assert_close(model.decode_indices(q.indices), model(data)[0])  # tokens alone decode


def _vqvae2_and_batch():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = VQVAE2(hidden=16, num_codes=16, code_dim=8, generator=g).eval()
    return model, toy_images(4, size=16, generator=g)


def test_vqvae2_maps_have_top_coarser_than_bottom():
    model, x = _vqvae2_and_batch()
    out = model(x)
    assert out.top.indices.shape == (4, 2, 2) and out.bottom.indices.shape == (4, 4, 4)
    torch.testing.assert_close(
        model.decode(model.quant_top.lookup(out.top.indices), model.quant_bottom.lookup(out.bottom.indices)), out.x_hat
    )


def test_vqvae2_bottom_level_is_conditioned_on_top_codes():
    model, x = _vqvae2_and_batch()
    h_bottom = model.enc_bottom(x)  # (B, hidden, 4, 4)
    q_top = model.quant_top(model.enc_top(h_bottom)).z_q.detach().requires_grad_()  # (B, D, 2, 2)
    pre_bottom = model.bottom_input(h_bottom, q_top)
    (grad,) = torch.autograd.grad(pre_bottom.sum(), q_top)
    assert grad.abs().sum() > 0  # gradient reaches the top codes
    # perturbing only the top codes changes what the bottom quantiser receives, and which codes it picks
    other_top = model.quant_top.lookup(torch.randint(0, 16, (4, 2, 2), generator=torch.Generator().manual_seed(1)))
    shifted = model.bottom_input(h_bottom, other_top * 5.0)
    assert (shifted - pre_bottom).abs().max() > 1e-3
    assert not torch.equal(model.quant_bottom(shifted).indices, model.quant_bottom(pre_bottom).indices)


def test_vqvae2_decoder_uses_both_levels():
    model, x = _vqvae2_and_batch()
    out = model(x)
    q_top = out.top.z_q.detach().requires_grad_()
    q_bottom = out.bottom.z_q.detach().requires_grad_()
    g_top, g_bottom = torch.autograd.grad(model.decode(q_top, q_bottom).square().sum(), (q_top, q_bottom))
    assert g_top.abs().sum() > 0 and g_bottom.abs().sum() > 0
    base = model.decode(out.top.z_q, out.bottom.z_q)
    assert (model.decode(torch.zeros_like(out.top.z_q), out.bottom.z_q) - base).abs().max() > 1e-3
    assert (model.decode(out.top.z_q, torch.zeros_like(out.bottom.z_q)) - base).abs().max() > 1e-3


def test_vqvae2_codebooks_are_ema_buffers_updated_in_training():
    model, x = _vqvae2_and_batch()
    names = dict(model.named_parameters())
    assert "quant_top.codebook" not in names and "quant_bottom.codebook" not in names
    before = (model.quant_top.codebook.clone(), model.quant_bottom.codebook.clone())
    model.train()
    model.loss(x).backward()
    assert not torch.equal(before[0], model.quant_top.codebook)
    assert not torch.equal(before[1], model.quant_bottom.codebook)
