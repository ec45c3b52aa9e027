import pytest
import torch

from reference_impls import ddpm
from reference_impls.lion import LION, HierarchicalPointVAE, PointPrior, ShapePrior


def _lion(T: int = 10) -> LION:
    torch.manual_seed(0)
    vae = HierarchicalPointVAE(shape_dim=8, point_extra=1, hidden=16)
    return LION(
        vae,
        ShapePrior(8, hidden=32, num_steps=T),
        PointPrior(4, 8, hidden=16, num_steps=T),
        ddpm.Schedule(ddpm.linear_betas(T, 1e-4, 0.3)),
    )


def test_sampling_draws_the_shape_latent_first_and_conditions_the_points_on_it():
    model = _lion()
    seen = []
    forward = model.point_prior.forward
    model.point_prior.forward = lambda h_t, t, z0: (seen.append(z0), forward(h_t, t, z0))[1]
    out = model.sample(2, 64, torch.Generator().manual_seed(3))
    # z_0 is drawn first: it is what the shape DDM alone yields from the same fresh generator
    torch.testing.assert_close(out["z0"], model.sample_shape_latent(2, torch.Generator().manual_seed(3)))
    # every point-denoiser call saw exactly that z_0
    assert len(seen) == model.schedule.num_steps and all(torch.equal(z, out["z0"]) for z in seen)
    # and the point latent depends on it: same noise, another z_0, another cloud
    h_a = model.sample_point_latent(out["z0"], 64, torch.Generator().manual_seed(5))
    h_b = model.sample_point_latent(out["z0"] + 1.0, 64, torch.Generator().manual_seed(5))
    assert (h_a - h_b).abs().max() > 1e-3


@pytest.mark.parametrize("n", [17, 2048])
def test_any_number_of_points_is_decoded_from_a_point_latent_sampled_given_z0(n):
    # The point DDM is a set function, so the cloud size is free at sampling time; the cloud is the
    # decoder's offsets added to the sampled latent points' xyz.
    model = _lion(T=5)
    out = model.sample(1, n, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    z0 = model.sample_shape_latent(1, g)
    h0 = model.sample_point_latent(z0, n, g)  # the same generator, continued
    assert torch.equal(out["z0"], z0) and torch.equal(out["h0"], h0) and h0.shape == (1, n, 4)
    torch.testing.assert_close(out["points"], h0[..., :3] + model.vae.decoder(h0, z0))


def test_shape_latent_is_invariant_and_point_path_equivariant_to_point_order():
    model = _lion()
    x = torch.randn(2, 50, 3)
    perm = torch.randperm(50)
    enc = model.vae.encode(x, torch.Generator().manual_seed(0))
    enc_p = model.vae.encode(x[:, perm], torch.Generator().manual_seed(0))  # same z_0 draw
    torch.testing.assert_close(enc_p["z_mean"], enc["z_mean"])
    torch.testing.assert_close(enc_p["h_mean"], enc["h_mean"][:, perm])
    z0, h0 = enc["z_mean"], enc["h_mean"]
    torch.testing.assert_close(model.vae.decode(h0[:, perm], z0), model.vae.decode(h0, z0)[:, perm])
    t = torch.tensor([1, 7])
    torch.testing.assert_close(model.point_prior(h0[:, perm], t, z0), model.point_prior(h0, t, z0)[:, perm])


def test_points_interact_through_the_pooled_feature():
    # equivariant is not point-wise: moving one point changes the prediction at another point
    model = _lion()
    h, z0, t = torch.randn(1, 30, 4), torch.randn(1, 8), torch.tensor([4])
    h2 = h.clone()
    h2[0, 0] += 5.0
    assert (model.point_prior(h2, t, z0)[0, 1:] - model.point_prior(h, t, z0)[0, 1:]).abs().max() > 1e-4


def test_seeded_vae_then_prior_training_lowers_both_losses():
    model = _lion(T=20)
    torch.manual_seed(1)
    x = torch.randn(8, 64, 3) * torch.tensor([1.0, 0.3, 0.1])  # flat ellipsoid clouds
    g = torch.Generator().manual_seed(0)
    vae_before = model.vae.loss(x, generator=torch.Generator().manual_seed(9)).item()
    opt = torch.optim.Adam(model.vae.parameters(), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        model.vae.loss(x, generator=g).backward()
        opt.step()
    assert model.vae.loss(x, generator=torch.Generator().manual_seed(9)).item() < 0.5 * vae_before

    def prior_eval() -> float:
        g_eval = torch.Generator().manual_seed(9)
        with torch.no_grad():
            return sum(model.prior_loss(x, g_eval).item() for _ in range(4)) / 4

    before = prior_eval()
    opt = torch.optim.Adam(list(model.shape_prior.parameters()) + list(model.point_prior.parameters()), 1e-2)
    for _ in range(40):
        opt.zero_grad()
        model.prior_loss(x, g).backward()
        opt.step()
    assert prior_eval() < before
