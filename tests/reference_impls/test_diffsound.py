"""Properties of the Diffsound module: mel token grid, reuse of the shared diffusion, text conditioning."""

import torch
import torch.nn.functional as F

from reference_impls import diffsound
from reference_impls import discrete_diffusion as dd

K, T, TEXT_VOCAB = 8, 4, 20


def _mel(b=2, n_mels=16, frames=32, seed=0):
    return torch.randn(b, 1, n_mels, frames, generator=torch.Generator().manual_seed(seed))


def test_token_grid_follows_the_mel_vqvae_strides():
    torch.manual_seed(0)
    for num_down in (1, 2, 3):
        vq = diffsound.MelVQVAE(num_codes=K, num_down=num_down, generator=torch.Generator().manual_seed(0))
        tokens = vq.encode(_mel(n_mels=16, frames=32))
        f = 2**num_down
        assert tokens.shape == (2, 16 // f, 32 // f) == (2, *vq.token_grid(16, 32))
        assert tokens.dtype == torch.int64 and tokens.min() >= 0 and tokens.max() < K
        assert vq.decode(tokens).shape == (2, 1, 16, 32)  # the decoder undoes the same strides


def test_diffsound_reuses_the_shared_transitions_and_sampler_not_copies():
    assert diffsound.mask_and_replace_schedule is dd.mask_and_replace_schedule
    assert diffsound.sample is dd.sample and diffsound.hybrid_loss is dd.hybrid_loss
    s = diffsound.diffsound_schedule(T, K)
    ref = dd.mask_and_replace_schedule(*dd.vq_diffusion_cumulative(T), K)
    assert torch.equal(s.Q, ref.Q) and torch.equal(s.Qbar, ref.Qbar) and s.mask_index == K


def test_denoiser_is_text_conditioned_and_bidirectional_over_mel_tokens():
    torch.manual_seed(1)
    net = diffsound.TokenDenoiser(K, (2, 4), T, TEXT_VOCAB).eval()
    zt = torch.randint(0, K + 1, (1, 2, 4))
    t = torch.tensor([2])
    text_a, text_b = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6]])
    base = net(zt, t, text_a)
    assert not torch.allclose(base, net(zt, t, text_b), atol=1e-6)  # the caption changes the prediction
    z2 = zt.clone()
    z2[0, -1, -1] = (z2[0, -1, -1] + 1) % (K + 1)  # change the LAST token of the raster order
    assert not torch.allclose(base[0, 0, 0], net(z2, t, text_a)[0, 0, 0], atol=1e-6)  # the FIRST one sees it


def test_loss_trains_denoiser_and_text_encoder_but_not_the_frozen_vqvae():
    torch.manual_seed(2)
    vq = diffsound.MelVQVAE(num_codes=K, generator=torch.Generator().manual_seed(0))
    net = diffsound.TokenDenoiser(K, vq.token_grid(16, 32), T, TEXT_VOCAB)
    text = torch.randint(0, TEXT_VOCAB, (2, 5))
    loss = diffsound.loss(
        vq, net, diffsound.diffsound_schedule(T, K), _mel(), text, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert net.text_encoder.tok.weight.grad.abs().sum() > 0
    assert net.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vq.parameters())


def test_generation_with_a_perfect_token_predictor_decodes_the_target_mel():
    torch.manual_seed(3)
    vq = diffsound.MelVQVAE(num_codes=K, generator=torch.Generator().manual_seed(0))
    grid = vq.token_grid(16, 32)
    target = vq.encode(_mel(seed=5))  # (2, 4, 8)
    text = torch.randint(0, TEXT_VOCAB, (2, 3))

    def oracle(zt, t, txt):
        assert torch.equal(txt, text)  # the caption is passed to every step
        return F.one_hot(target, K).float() * 40.0

    mel, out = diffsound.generate(
        vq, oracle, diffsound.diffsound_schedule(T, K), text, grid, torch.Generator().manual_seed(0)
    )
    assert torch.equal(out.tokens, target) and out.forward_passes == T
    assert torch.allclose(mel, vq.decode(target))
