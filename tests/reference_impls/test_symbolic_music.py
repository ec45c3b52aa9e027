import torch

from reference_impls import ddpm
from reference_impls.symbolic_music import LatentSequenceDiffusion, SegmentVAE, TransformerDenoiser


def test_without_positions_permuting_the_latents_permutes_the_prediction():
    torch.manual_seed(0)
    net = TransformerDenoiser(latent_dim=6, dim=16, num_steps=50, use_positions=False)
    z, t, perm = torch.randn(2, 7, 6), torch.tensor([4, 40]), torch.randperm(7)
    torch.testing.assert_close(net(z[:, perm], t), net(z, t)[:, perm])


def test_with_positions_the_order_of_latents_matters():
    torch.manual_seed(0)
    net = TransformerDenoiser(latent_dim=6, dim=16, num_steps=50, use_positions=True)
    z, t = torch.randn(2, 7, 6), torch.tensor([4, 40])
    perm = torch.tensor([6, 5, 4, 3, 2, 1, 0])
    assert (net(z[:, perm], t) - net(z, t)[:, perm]).abs().max() > 1e-3


def test_denoiser_is_not_causal_first_latent_sees_the_last():
    torch.manual_seed(0)
    net = TransformerDenoiser(latent_dim=6, dim=16, num_steps=50)
    z, t = torch.randn(1, 7, 6), torch.tensor([10])
    z2 = z.clone()
    z2[:, -1] += 1.0
    assert (net(z2, t)[:, 0] - net(z, t)[:, 0]).abs().max() > 1e-4


def test_decoded_samples_have_the_vae_output_shape_and_segments_decode_independently():
    torch.manual_seed(0)
    vae = SegmentVAE(steps=8, vocab=6, latent_dim=8)
    model = LatentSequenceDiffusion(
        vae, TransformerDenoiser(8, dim=16, num_steps=10), ddpm.Schedule(ddpm.linear_betas(10, 1e-4, 0.3))
    )
    logits = model.sample(2, 5, torch.Generator().manual_seed(0))
    assert logits.shape == (2, 5, 8, 6) == vae.decode(torch.zeros(2, 5, 8)).shape
    z = torch.randn(1, 5, 8)
    z2 = z.clone()
    z2[:, 2] += 1.0
    diff = (vae.decode(z2) - vae.decode(z)).abs().amax(dim=(-1, -2))[0]  # (S,)
    assert diff[2] > 1e-4 and torch.all(diff[[0, 1, 3, 4]] == 0)


def test_seeded_training_on_encoded_sequences_lowers_the_loss():
    torch.manual_seed(0)
    vae = SegmentVAE(steps=8, vocab=6, latent_dim=8)
    tokens = torch.randint(0, 6, (4, 8))[torch.randint(0, 4, (16, 6))]  # (B=16, S=6, steps=8) from 4 motifs
    model = LatentSequenceDiffusion(
        vae, TransformerDenoiser(8, dim=32, num_steps=50), ddpm.Schedule(ddpm.linear_betas(50, 1e-4, 0.2))
    )
    model.fit_normalisation(tokens)

    def evaluate() -> float:
        g = torch.Generator().manual_seed(9)
        with torch.no_grad():
            return sum(model.loss(tokens, g).item() for _ in range(4)) / 4

    before = evaluate()
    opt = torch.optim.Adam(model.denoiser.parameters(), 3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(25):
        opt.zero_grad()
        model.loss(tokens, g).backward()
        opt.step()
    assert evaluate() < 0.8 * before
