"""Tests for reference_impls/diffae.py (Diffusion Autoencoders, papers/preechakul2022diffusion.md)."""

import pytest
import torch

from reference_impls.ddim import exact_eps_oracle, gaussian_eps_oracle, make_timesteps
from reference_impls.ddpm import Schedule, linear_betas
from reference_impls.diffae import CondEpsMLP, SemanticEncoder, decode, diffae_loss, encode


@pytest.fixture(scope="module")
def sched():
    return Schedule(linear_betas(1000))


def _invertible_encoder(dim: int, seed: int):
    """z_sem = W x with W invertible, so the semantic code determines the image: x = W^{-1} z."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(dim, dim, generator=g, dtype=torch.float64) + 3 * torch.eye(dim, dtype=torch.float64)
    return (lambda x: x @ W.T), (lambda z: torch.linalg.solve(W, z.T).T)


def _point_oracle(sched, decode_z):
    """eps_theta(x_t, t, z) = the exact oracle for the single image W^{-1} z."""
    return lambda x, t, z: exact_eps_oracle(sched, decode_z(z))(x, t)


def test_encode_then_decode_reconstructs_with_an_exact_oracle(sched):
    enc, dec_z = _invertible_encoder(6, 0)
    eps_model = _point_oracle(sched, dec_z)
    x0 = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for n in (10, 100):
        ts = make_timesteps(1000, n, "trailing")
        z, x_T = encode(sched, enc, eps_model, x0, ts)
        assert torch.allclose(decode(sched, eps_model, z, x_T, ts), x0, atol=1e-8)


def test_changing_z_sem_changes_the_decoded_output(sched):
    enc, dec_z = _invertible_encoder(6, 2)
    eps_model = _point_oracle(sched, dec_z)
    g = torch.Generator().manual_seed(3)
    x0, other = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    ts = make_timesteps(1000, 20, "trailing")
    z, x_T = encode(sched, enc, eps_model, x0, ts)
    swapped = decode(sched, eps_model, enc(other), x_T, ts)
    assert torch.allclose(swapped, other, atol=1e-8)  # the semantic code alone sets the oracle's image
    assert (swapped - x0).abs().min() > 1e-3


def test_untrained_network_output_depends_on_z_sem_through_adaptive_norm():
    torch.manual_seed(0)
    s = Schedule(linear_betas(100, 1e-3, 0.2))
    model = CondEpsMLP(data_dim=4, z_dim=8)
    x_T = torch.randn(3, 4)
    ts = make_timesteps(100, 10, "trailing")
    z1, z2 = torch.randn(2, 3, 8)
    a = decode(s, model, z1, x_T, ts)
    b = decode(s, model, z2, x_T, ts)
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(a, decode(s, model, z1, x_T, ts))


def test_stochastic_code_from_inversion_is_deterministic_and_round_trips(sched):
    # A conditional model whose data, given z, is Gaussian around W^{-1} z: the DDIM ODE is smooth, so
    # the inversion is a genuine encoding (not the trivial point-mass one) and decoding undoes it.
    enc, dec_z = _invertible_encoder(3, 4)

    def eps_model(x, t, z):
        return gaussian_eps_oracle(sched, dec_z(z), 0.5)(x, t)

    g = torch.Generator().manual_seed(5)
    centre = torch.randn(1, 3, generator=g, dtype=torch.float64)
    x0 = centre + 0.5 * torch.randn(8, 3, generator=g, dtype=torch.float64)
    z_fixed = enc(centre).expand(8, 3)
    ts = make_timesteps(1000, 500, "trailing")
    z, x_T = encode(sched, lambda x: z_fixed, eps_model, x0, ts)
    z2, x_T2 = encode(sched, lambda x: z_fixed, eps_model, x0, ts)
    assert torch.equal(x_T, x_T2) and torch.equal(z, z2)
    assert (decode(sched, eps_model, z, x_T, ts) - x0).abs().max() < 0.03
    # same z_sem, different images -> different stochastic codes: x_T carries the remaining detail
    assert torch.cdist(x_T, x_T).fill_diagonal_(1.0).min() > 0.05


def _train(train_encoder: bool, steps: int = 200) -> float:
    """Train eps_theta (and the encoder if asked) with diffae_loss from an encoder whose z_sem is
    constant at the start; return the loss on fresh noise afterwards."""
    torch.manual_seed(0)
    s = Schedule(linear_betas(100, 1e-3, 0.2))
    enc, model = SemanticEncoder(4, 8), CondEpsMLP(4, 8)
    with torch.no_grad():
        enc.net[-1].weight.zero_()  # z_sem = a constant: it tells the denoiser nothing about x_0
    x0 = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    params = list(model.parameters()) + (list(enc.parameters()) if train_encoder else [])
    opt = torch.optim.Adam(params, lr=3e-3)
    for i in range(steps):
        opt.zero_grad()
        diffae_loss(s, enc, model, x0, torch.Generator().manual_seed(i)).backward()
        opt.step()
    with torch.no_grad():
        return float(diffae_loss(s, enc, model, x0, torch.Generator().manual_seed(10_000)))


def test_denoising_loss_trains_the_semantic_encoder():
    # The only training signal of Enc_phi is L_simple through eps_theta(x_t, t, z_sem). Trained with it,
    # the encoder learns a code that tells the denoiser x_0, which a frozen, uninformative one cannot.
    with_encoder, frozen = _train(True), _train(False)
    assert with_encoder < 0.5 * frozen
