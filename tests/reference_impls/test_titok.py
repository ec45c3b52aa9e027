import torch
import torch.nn.functional as F

from reference_impls.titok import TiTok, patchify, unpatchify

K = 6


def _model(seed=0):
    torch.manual_seed(seed)
    return TiTok(
        num_latent_tokens=K,
        codebook_size=32,
        token_dim=4,
        patch_size=4,
        dim=32,
        depth=2,
        generator=torch.Generator().manual_seed(seed),
    ).eval()


def _images(b, h, w, seed=1):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_number_of_tokens_is_K_whatever_the_image_size():
    model = _model()
    for h, w in [(8, 8), (16, 16), (32, 16), (64, 64)]:
        idx = model.encode(_images(2, h, w))
        assert idx.shape == (2, K), (h, w)  # a 2-D tokenizer would give (h/4) * (w/4)
    # and the decoder draws any grid from the same K codes
    idx = model.encode(_images(1, 16, 16))
    assert model.decode_tokens(idx, (2, 2)).shape == (1, 3, 8, 8)
    assert model.decode_tokens(idx, (8, 4)).shape == (1, 3, 32, 16)


def test_reconstruction_depends_only_on_the_1d_tokens():
    model = _model()
    x = _images(2, 16, 16)
    out = model(x)
    # decoding the indices alone gives the training-path reconstruction exactly
    assert torch.allclose(model.decode_tokens(out.quantized.indices, (4, 4)), out.reconstruction, atol=1e-6)
    # a different image that lands on the same K codes reconstructs identically
    y = x.clone()
    y[:, :, :4, :4] += 1e-4  # small change in one patch
    same = (model.encode(y) == out.quantized.indices).all()
    assert same
    assert torch.allclose(model(y).reconstruction, out.reconstruction, atol=1e-6)
    # and the reconstruction's gradient reaches the pixels only through the K quantised latents
    x.requires_grad_(True)
    q = model.quantize(x)
    z_q = q.z_q.detach().requires_grad_(True)
    rec = model.decoder(z_q.transpose(1, 2), (4, 4))
    (g_zq,) = torch.autograd.grad(rec.square().sum(), z_q)
    (g_direct,) = torch.autograd.grad(model(x).reconstruction.square().sum(), x)
    (g_through,) = torch.autograd.grad((q.z_q * g_zq).sum(), x)  # chain rule through the K tokens only
    assert torch.allclose(g_direct, g_through, atol=1e-5)


def test_every_latent_token_reads_every_patch():
    """Unlike a 2-D grid of codes, each 1-D token is a function of the whole image."""
    model = _model()
    x = _images(1, 16, 16).requires_grad_(True)
    z = model.encoder(x)  # (1, K, c)
    for k in range(K):
        (g,) = torch.autograd.grad(z[0, k].sum(), x, retain_graph=True)
        per_patch = patchify(g.abs(), 4).sum(-1)[0]  # (16,) gradient mass per patch
        assert (per_patch > 0).all(), k


def test_token_k_is_projected_from_latent_slot_k_only():
    """The per-token projection; the released code's legacy reshape (B, K, D) -> (B, D, K, 1) mixes slots."""
    model = _model()
    hidden = model.encoder.hidden(_images(1, 16, 16)).detach()  # (1, K, D)
    bumped = hidden.clone()
    bumped[0, 2] += 1.0
    changed = (model.encoder.project(bumped) - model.encoder.project(hidden)).abs().sum(-1)[0]  # (K,)
    assert changed[2] > 0 and torch.all(changed[torch.arange(K) != 2] == 0)
    # the legacy layout: reshape without transposing, then a per-position 1x1 conv (a Linear on D)
    d = hidden.shape[-1]

    def legacy(h):
        return model.encoder.to_token(h.reshape(1, d, K).transpose(1, 2))

    legacy_changed = (legacy(bumped) - legacy(hidden)).abs().sum(-1)[0]
    assert (legacy_changed > 0).sum() > 1  # one slot's change leaks into several tokens


def test_codes_are_unit_vectors_chosen_by_cosine_similarity():
    model = _model()
    x = _images(2, 16, 16)
    q = model.quantize(x)
    z = F.normalize(model.encoder(x), dim=-1)  # (B, K, c)
    codes = F.normalize(model.quantizer.codebook, dim=-1)  # (V, c)
    assert torch.equal(q.indices, (z @ codes.t()).argmax(-1))
    assert torch.allclose(q.z_q.norm(dim=1), torch.ones(2, K), atol=1e-5)


def test_patchify_round_trips_and_rejects_sizes_off_the_patch_grid():
    x = _images(2, 12, 8)
    assert torch.equal(unpatchify(patchify(x, 4), (3, 2), 4), x)
    try:
        patchify(_images(1, 10, 8), 4)
    except ValueError as e:
        assert "multiple of the patch size" in str(e)
    else:
        raise AssertionError("a 10x8 image with patch 4 must be refused")


def test_straight_through_lets_the_reconstruction_train_the_encoder():
    model = _model().train()
    x = _images(2, 16, 16)
    out = model(x)
    loss = (out.reconstruction - x).square().mean() + out.quantized.loss
    loss.backward()
    assert model.encoder.latent_tokens.grad.abs().sum() > 0
    assert model.quantizer.codebook.grad.abs().sum() > 0
