import pytest
import torch

from reference_impls import ddpm
from reference_impls.dit import DiT, DiTBlock, dit_loss, guided_eps, patchify, sample, unpatchify


def tiny(perturb=True):
    torch.manual_seed(0)
    model = DiT(input_size=8, patch=2, in_channels=4, dim=32, depth=2, n_heads=2, n_classes=5)
    if perturb:  # move off the zero initialisation so the conditioning paths carry signal
        with torch.no_grad():
            for p in model.parameters():
                if p.abs().max() == 0:
                    p.normal_(std=0.1)
    return model.eval()


def latents(b=2, seed=1):
    return torch.randn(b, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_every_block_is_the_identity_at_initialisation():
    torch.manual_seed(0)
    block = DiTBlock(32, 4)
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(3, 10, 32, generator=g), torch.randn(3, 32, generator=g)
    torch.testing.assert_close(block(x, c), x, rtol=0, atol=0)
    with torch.no_grad():  # the gates are what made it the identity: give them weights and it is not
        block.ada[-1].weight.normal_(std=0.1)
    assert (block(x, c) - x).abs().max() > 1e-3


def test_whole_model_predicts_zero_noise_at_initialisation_but_its_blocks_are_trainable():
    model = tiny(perturb=False)
    x, t, y = latents(), torch.tensor([3, 500]), torch.tensor([0, 4])
    assert model(x, t, y).abs().max() == 0
    loss = dit_loss(model, ddpm.Schedule(ddpm.linear_betas()), x, y, generator=torch.Generator().manual_seed(3))
    loss.backward()
    assert model.out.weight.grad.abs().sum() > 0  # the zero final layer still receives a gradient


def test_patchify_and_unpatchify_round_trip():
    x = latents()
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 16, 16)
    torch.testing.assert_close(unpatchify(tokens, 2, 4, 8, 8), x, rtol=0, atol=0)
    t = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(patchify(unpatchify(t, 2, 4, 8, 8), 2), t, rtol=0, atol=0)


def test_patch_token_holds_its_own_pixels_row_col_channel():
    x = latents(1)
    tokens = patchify(x, 2)  # patches in raster order over the 4 x 4 patch grid
    r, c = 2, 1
    patch = x[0, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].permute(1, 2, 0)  # (p, p, C)
    torch.testing.assert_close(tokens[0, r * 4 + c], patch.reshape(-1))


def test_loss_is_ddpm_l_simple_with_the_class_condition():
    model, s = tiny(), ddpm.Schedule(ddpm.linear_betas())
    x, y = latents(), torch.tensor([1, 2])
    loss = dit_loss(model, s, x, y, p_uncond=0.0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    torch.rand(2, generator=g)  # the condition-dropout draw comes first
    expected = ddpm.eps_loss(s, lambda x_t, t: model(x_t, t, y), x, generator=g)
    torch.testing.assert_close(loss, expected)
    g = torch.Generator().manual_seed(5)
    torch.rand(2, generator=g)
    other = ddpm.eps_loss(s, lambda x_t, t: model(x_t, t, y + 1), x, generator=g)
    assert (loss - other).abs() > 1e-6


def test_guidance_at_scale_one_is_the_conditional_prediction_and_the_official_variant_skips_channel_four():
    model = tiny()
    x, t, y = latents(), torch.tensor([10, 900]), torch.tensor([0, 3])
    cond = model(x, t, y)
    uncond = model(x, t, torch.full_like(y, model.null_label))
    torch.testing.assert_close(guided_eps(model, x, t, y, scale=1.0), cond, rtol=0, atol=1e-6)
    full = guided_eps(model, x, t, y, scale=4.0)
    torch.testing.assert_close(full, uncond + 4.0 * (cond - uncond), rtol=0, atol=1e-5)
    official = guided_eps(model, x, t, y, scale=4.0, channels=3)  # models.py forward_with_cfg
    torch.testing.assert_close(official[:, :3], full[:, :3])
    torch.testing.assert_close(official[:, 3], cond[:, 3])
    assert (official[:, 3] - full[:, 3]).abs().max() > 1e-4


def test_sampler_runs_the_guided_ddpm_chain():
    model = tiny()
    s = ddpm.Schedule(ddpm.linear_betas(num_steps=10, beta_end=0.2))
    y = torch.tensor([0, 1])
    a = sample(model, s, y, scale=1.0, size=8, generator=torch.Generator().manual_seed(6))
    b = ddpm.p_sample_loop(s, lambda x_t, t: model(x_t, t, y), (2, 4, 8, 8), generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_latent_not_divisible_by_the_patch_is_refused():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 4, 7, 8), 2)
