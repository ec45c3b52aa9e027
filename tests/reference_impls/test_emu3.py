import pytest
import torch
from torch import nn

from reference_impls.chameleon import Chameleon
from reference_impls.emu3 import (
    Emu3Vocabulary,
    allowed_next,
    document,
    generate_image,
    image_tokens,
    next_token_loss,
    parse_image,
    vision_only_labels,
)

VOCAB = Emu3Vocabulary(text_size=16, codebook_size=24)
H, W = 3, 4


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _model(seed=0):
    torch.manual_seed(seed)
    return Chameleon(VOCAB, dim=16, depth=2, max_len=48).eval()


def test_released_layout_reproduces_the_special_ids_and_size_of_configuration_emu3():
    v = Emu3Vocabulary.released()
    # emu3/mllm/configuration_emu3.py defaults
    assert (v.pad, v.eol, v.eof, v.bos, v.eos) == (151643, 151846, 151847, 151849, 151850)
    assert (v.img, v.boi, v.eoi) == (151851, 151852, 151853)
    assert v.size == 184622
    assert v.visual_offset == 184622 - 32768  # the visual block is the last K rows


def test_text_and_vision_ids_occupy_disjoint_ranges_of_one_table_and_map_back_exactly():
    model = _model()
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == VOCAB.size]
    assert len(tables) == 1 and model.prior.head.out_features == VOCAB.size
    ids = torch.arange(VOCAB.size)
    text, vis = VOCAB.is_text(ids), VOCAB.is_visual(ids)
    specials = torch.tensor([VOCAB.pad, VOCAB.eol, VOCAB.eof, VOCAB.bos, VOCAB.eos, VOCAB.img, VOCAB.boi, VOCAB.eoi])
    assert not (text & vis).any()
    assert not text[specials].any() and not vis[specials].any()
    assert len(set(specials.tolist())) == len(specials)
    assert int(text.sum()) == VOCAB.text_size and int(vis.sum()) == VOCAB.codebook_size
    codes = torch.arange(VOCAB.codebook_size)
    assert torch.equal(VOCAB.codes_of(VOCAB.visual_ids(codes)), codes)
    assert torch.equal(tables[0](VOCAB.visual_ids(codes)), tables[0].weight[VOCAB.visual_offset :])
    with pytest.raises(ValueError, match="outside the visual range"):
        VOCAB.codes_of(torch.tensor([VOCAB.eol]))
    with pytest.raises(ValueError, match="vision codes must lie"):
        VOCAB.visual_ids(torch.tensor([VOCAB.codebook_size]))


def test_image_is_boi_resolution_prefix_img_then_rows_each_ended_by_eol_then_eof_eoi():
    codes = torch.randint(0, VOCAB.codebook_size, (H, W), generator=_g(1))
    ids = image_tokens(codes, VOCAB)
    prefix = VOCAB.text_of(f"{H}*{W}")  # "3*4" as text ids
    assert ids[0] == VOCAB.boi and ids[1 : 1 + len(prefix)].tolist() == prefix and ids[1 + len(prefix)] == VOCAB.img
    body = ids[2 + len(prefix) : -2].view(H, W + 1)
    assert (body[:, -1] == VOCAB.eol).all()  # the last row too ends with <eol>
    assert torch.equal(VOCAB.codes_of(body[:, :-1]), codes)  # raster order, row by row
    assert ids[-2:].tolist() == [VOCAB.eof, VOCAB.eoi]
    assert len(ids) == 1 + len(prefix) + 1 + H * (W + 1) + 2


def test_document_interleaves_bos_caption_image_eos_and_parses_back_to_the_codes():
    caption = torch.randint(0, VOCAB.text_size, (5,), generator=_g(2))
    codes = torch.randint(0, VOCAB.codebook_size, (H, W), generator=_g(3))
    ids = document(caption, codes, VOCAB)
    assert ids[0] == VOCAB.bos and torch.equal(ids[1:6], caption) and ids[6] == VOCAB.boi and ids[-1] == VOCAB.eos
    assert torch.equal(parse_image(ids, VOCAB), codes)
    # the modality of every id is known from its range alone
    kinds = VOCAB.is_text(ids).int() + 2 * VOCAB.is_visual(ids).int()
    assert int((kinds == 2).sum()) == H * W and int((kinds == 1).sum()) == 5 + 3  # caption + "3*4"
    broken = ids.clone()
    first_eol = 6 + len("3*4") + 1 + W + 1  # <boi> at 6, the prefix, <img>, then W codes
    assert ids[first_eol] == VOCAB.eol
    broken[first_eol] = VOCAB.visual_ids(torch.tensor(0))  # the first row's <eol> replaced by a code
    with pytest.raises(ValueError, match="ends with <eol>"):
        parse_image(broken, VOCAB)


def test_next_token_loss_over_the_mixed_sequence_is_the_sum_of_per_token_cross_entropies():
    model = _model()
    caption = torch.randint(0, VOCAB.text_size, (2, 4), generator=_g(4))
    codes = torch.randint(0, VOCAB.codebook_size, (2, H, W), generator=_g(5))
    ids = torch.stack([document(caption[i], codes[i], VOCAB) for i in range(2)])  # (2, N)
    logits = model(ids)
    logp = torch.log_softmax(logits, dim=-1)  # (2, N, V)
    by_hand = 0.0
    for b in range(2):
        for i in range(ids.shape[1] - 1):  # token i + 1 scored from the prefix up to i
            by_hand = by_hand - logp[b, i, ids[b, i + 1]]
    total = next_token_loss(model, ids, reduction="sum")
    torch.testing.assert_close(total, by_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(next_token_loss(model, ids), by_hand / (2 * (ids.shape[1] - 1)))
    # train.py's default: only the visual targets count (text, prefix, <eol>, <eof>, <eoi> ignored)
    labels = vision_only_labels(ids, VOCAB)
    vis = VOCAB.is_visual(ids[:, 1:])
    nll = -torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(next_token_loss(model, ids, labels, reduction="sum"), nll[vis].sum())
    assert int(vis.sum()) == 2 * H * W


def test_constrained_decoding_follows_the_release_schedule_of_rows_eol_eof_eoi_eos():
    end = (W + 1) * H
    for offset in range(1, end + 6):
        allowed = allowed_next(offset, H, W, VOCAB)
        if offset <= end and offset % (W + 1) == 0:
            assert allowed.nonzero().flatten().tolist() == [VOCAB.eol]
        elif offset <= end:
            assert torch.equal(allowed, VOCAB.is_visual(torch.arange(VOCAB.size)))
    assert allowed_next(end + 1, H, W, VOCAB).nonzero().item() == VOCAB.eof
    assert allowed_next(end + 2, H, W, VOCAB).nonzero().item() == VOCAB.eoi
    assert allowed_next(end + 3, H, W, VOCAB).nonzero().item() == VOCAB.eos
    model = _model()
    bias = torch.zeros(VOCAB.size)
    bias[VOCAB.eoi] = 50.0  # a model that would close the image at once still writes H x W codes
    hook = model.prior.head.register_forward_hook(lambda m, args, out: out + bias)
    caption = torch.randint(0, VOCAB.text_size, (2, 3), generator=_g(6))
    seq = generate_image(model, caption, H, W, generator=_g(7))
    hook.remove()
    for b in range(2):
        codes = parse_image(seq[b], VOCAB)
        assert codes.shape == (H, W)
        assert seq[b, -1] == VOCAB.eos
        assert torch.equal(seq[b, 1:4], caption[b])
