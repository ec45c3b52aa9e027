import torch

from reference_impls.muse import MuseTransformer
from reference_impls.phenaki import CausalVideoTokenizer, generate_video_tokens

TP = 2


def tokenizer(seed=0):
    torch.manual_seed(seed)
    return CausalVideoTokenizer(
        channels=3,
        size=(8, 8),
        patch=(4, 4),
        tp=TP,
        dim=16,
        num_codes=32,
        generator=torch.Generator().manual_seed(seed),
    ).eval()


def video(frames, seed=0):
    return torch.randn(2, 3, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_tokens_of_a_slot_do_not_change_when_later_frames_change():
    tok = tokenizer()
    x = video(1 + 3 * TP)
    y = x.clone()
    y[:, :, 1 + 2 * TP :] = torch.randn(2, 3, TP, 8, 8)  # change only the last tube (slot 3)
    zx, zy = tok.encode(x), tok.encode(y)
    assert torch.equal(zx[:, :3], zy[:, :3])  # slots 0..2 bit-identical
    assert not torch.allclose(zx[:, 3], zy[:, 3])  # the changed slot does move
    ix, _ = tok.tokenize(x)
    iy, _ = tok.tokenize(y)
    assert torch.equal(ix[:, :3], iy[:, :3])


def test_changing_an_early_frame_reaches_later_slots():
    # causal, not per-slot: information flows forward in time
    tok = tokenizer()
    x = video(1 + 3 * TP)
    y = x.clone()
    y[:, :, 0] += 1.0
    zx, zy = tok.encode(x), tok.encode(y)
    assert all(not torch.allclose(zx[:, k], zy[:, k]) for k in range(4))


def test_tokenising_the_first_k_frames_gives_a_prefix_of_the_full_tokenisation():
    tok = tokenizer(1)
    x = video(1 + 4 * TP, seed=1)
    full, _ = tok.tokenize(x)
    zf = tok.encode(x)
    for k in range(4):
        part, _ = tok.tokenize(x[:, :, : 1 + k * TP])
        assert part.shape[1] == k + 1
        assert torch.equal(part, full[:, : k + 1])
        assert torch.allclose(tok.encode(x[:, :, : 1 + k * TP]), zf[:, : k + 1], atol=1e-5)


def test_patchify_and_unpatchify_are_inverse():
    tok = tokenizer()
    x = video(1 + 2 * TP)
    assert torch.equal(tok.unpatchify(*tok.patchify(x)), x)


def test_decoder_is_causal_in_time_too():
    tok = tokenizer()
    idx, _ = tok.tokenize(video(1 + 2 * TP))
    other = idx.clone()
    other[:, 2] = (other[:, 2] + 1) % 32
    a, b = tok.detokenize(idx), tok.detokenize(other)
    assert torch.equal(a[:, :, : 1 + TP], b[:, :, : 1 + TP])  # frames of slots 0, 1 unchanged
    assert not torch.allclose(a[:, :, 1 + TP :], b[:, :, 1 + TP :])


def test_masked_generation_keeps_the_prefix_slots_and_fills_the_rest():
    torch.manual_seed(0)
    grid = (3, 2, 2)
    model = MuseTransformer(32, 12, text_dim=8, dim=32, depth=1).eval()
    text = torch.randn(2, 4, 8)
    prefix = torch.randint(0, 32, (2, 1, 2, 2))
    out = generate_video_tokens(model, text, grid, steps=4, prefix=prefix, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :1], prefix)
    assert out.max() < 32
