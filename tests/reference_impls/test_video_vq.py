import pytest
import torch

from reference_impls.video_vq import VideoVQVAE, token_grid_shape


def _model(strides, seed=0, **kw):
    torch.manual_seed(seed)
    return VideoVQVAE(strides=strides, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("strides", [(4, 2, 2), (2, 4, 4), (1, 4, 2), (4, 4, 4)])
def test_token_grid_follows_the_strides_per_axis(strides):
    m = _model(strides)
    x = torch.randn(1, 3, 8, 8, 8)
    expected = token_grid_shape((8, 8, 8), strides)
    assert expected == (8 // strides[0], 8 // strides[1], 8 // strides[2])
    assert tuple(m.encode(x).shape[1:]) == expected
    y, _ = m(x)
    assert y.shape == x.shape  # the decoder undoes exactly the same strides


def test_token_grid_rejects_sizes_the_strides_do_not_divide():
    with pytest.raises(ValueError):
        token_grid_shape((6, 16, 16), (4, 2, 2))


def test_each_token_sees_only_its_space_time_neighbourhood():
    # a token at (t, h, w) has a receptive field around (t*s_t, h*s_h, w*s_w): far frames do not reach it
    m = _model((2, 2, 2), n_res=0)
    x = torch.randn(1, 3, 16, 8, 8, requires_grad=True)
    z = m.encoder(x)  # (1, D, 8, 4, 4)
    z[0, :, 0].sum().backward()  # tokens of the first latent frame
    per_frame = x.grad.abs().sum(dim=(0, 1, 3, 4))  # (16,)
    assert per_frame[:2].sum() > 0 and torch.all(per_frame[8:] == 0)


def test_indices_round_trip_through_lookup_and_decode():
    m = _model((2, 2, 2))
    m.eval()
    x = torch.randn(2, 3, 4, 4, 4)
    y, q = m(x)
    idx = m.encode(x)
    assert torch.equal(idx, q.indices)
    assert torch.allclose(m.decode(idx), y, atol=1e-6)
    # quantising the looked-up codes gives the same indices back
    again = m.quantizer(m.quantizer.lookup(idx)).indices
    assert torch.equal(again, idx)
    seq = idx.reshape(2, -1)  # raster order (t, h, w) for the prior
    assert torch.equal(seq.reshape(idx.shape), idx)
    assert seq[0, 1] == idx[0, 0, 0, 1]


def test_codebook_is_updated_by_ema_not_by_gradient():
    m = _model((2, 2, 2))
    assert "codebook" not in dict(m.named_parameters())
    x = torch.randn(2, 3, 4, 4, 4)
    before = m.quantizer.codebook.clone()
    m.eval()
    m(x)
    assert torch.equal(m.quantizer.codebook, before)  # no update at evaluation
    m.train()
    _, q = m(x)
    used = torch.unique(q.indices)
    assert not torch.allclose(m.quantizer.codebook[used], before[used])
    q.loss.backward()  # commitment only: reaches the encoder
    assert m.encoder[0].weight.grad.abs().sum() > 0
