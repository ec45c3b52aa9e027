import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_impls.chameleon import (
    Chameleon,
    MixedVocabulary,
    allowed_next,
    generate_mixed,
    image_span,
    interleave,
)

VOCAB = MixedVocabulary(text_size=20, image_codes=12, image_tokens=4)


def _model(seed=0):
    torch.manual_seed(seed)
    return Chameleon(VOCAB, dim=16, depth=2).eval()


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_text_and_image_tokens_share_one_embedding_table_with_disjoint_id_ranges():
    model = _model()
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.num_embeddings == VOCAB.size]
    assert len(tables) == 1  # one table for text, image codes and the two markers
    ids = torch.arange(VOCAB.size)
    text, image = VOCAB.is_text(ids), VOCAB.is_image(ids)
    special = (ids == VOCAB.boi) | (ids == VOCAB.eoi)
    assert not (text & image).any() and not (text & special).any() and not (image & special).any()
    assert bool((text | image | special).all())  # the ranges tile the vocabulary
    codes = torch.arange(VOCAB.image_codes)
    assert torch.equal(VOCAB.image_codes_of(VOCAB.image_ids(codes)), codes)
    # the input row of image code k is row V_text + k of the same table that holds the text rows
    assert torch.equal(tables[0](VOCAB.image_ids(codes)), tables[0].weight[VOCAB.text_size : VOCAB.boi])
    # one head: every position scores text and image ids in the same softmax
    assert model.prior.head.out_features == VOCAB.size


def test_decoding_text_ids_as_image_codes_is_refused():
    with pytest.raises(ValueError, match="outside the image range"):
        VOCAB.image_codes_of(torch.tensor([3]))
    with pytest.raises(ValueError, match=r"image codes must lie in \[0, 12\)"):
        VOCAB.image_ids(torch.tensor([12]))


def test_interleaved_document_places_each_image_between_boi_and_eoi():
    g = _g()
    t1, t2 = torch.randint(0, 20, (1, 3), generator=g), torch.randint(0, 20, (1, 2), generator=g)
    img = torch.randint(0, 12, (1, 4), generator=g)
    ids = interleave([("text", t1), ("image", img), ("text", t2)], VOCAB)
    assert ids.shape == (1, 3 + 4 + 2 + 2)
    assert ids[0, 3] == VOCAB.boi and ids[0, 8] == VOCAB.eoi
    assert torch.equal(VOCAB.image_codes_of(ids[:, 4:8]), img)
    assert torch.equal(ids[:, :3], t1) and torch.equal(ids[:, 9:], t2)


def _favour(model, token):
    bias = torch.zeros(VOCAB.size)
    bias[token] = 50.0
    return model.prior.head.register_forward_hook(lambda m, args, out: out + bias)


def test_modality_switches_inside_one_sequence_at_boi_and_eoi():
    model = _model()
    prefix = torch.randint(0, 20, (2, 3), generator=_g(1))
    h = _favour(model, VOCAB.boi)  # the model would open an image at every chance
    seq = generate_mixed(model, prefix, 2 * (VOCAB.image_tokens + 2), generator=_g(2))
    h.remove()
    new = seq[:, 3:]
    n = VOCAB.image_tokens
    for start in (0, n + 2):  # two images in a row: <boi> N image ids <eoi>
        assert (new[:, start] == VOCAB.boi).all()
        assert VOCAB.is_image(new[:, start + 1 : start + 1 + n]).all()  # <boi> is never drawn inside
        assert (new[:, start + 1 + n] == VOCAB.eoi).all()
    # a model that prefers an image id in text mode still writes text there
    h = _favour(model, VOCAB.image_offset + 5)
    seq = generate_mixed(model, prefix, 4, generator=_g(3))
    h.remove()
    assert VOCAB.is_text(seq[:, 3:]).all()


def test_allowed_next_follows_the_open_image():
    n = VOCAB.image_tokens
    inside = torch.tensor([[1, 2, VOCAB.boi, VOCAB.image_offset]])
    full = torch.tensor([[1, VOCAB.boi] + [VOCAB.image_offset] * n])
    closed = torch.tensor([[1, VOCAB.boi] + [VOCAB.image_offset] * n + [VOCAB.eoi]])
    a_in, a_full, a_closed = (allowed_next(x, VOCAB)[0] for x in (inside, full, closed))
    assert torch.equal(a_in.nonzero().flatten(), torch.arange(VOCAB.image_offset, VOCAB.boi))
    assert a_full.nonzero().flatten().tolist() == [VOCAB.eoi]
    assert a_closed.nonzero().flatten().tolist() == list(range(VOCAB.text_size)) + [VOCAB.boi]


def test_one_loss_over_the_mixed_sequence_trains_image_tokens_from_text_context():
    model = _model().train()
    g = _g(4)
    ids = interleave(
        [("text", torch.randint(0, 20, (2, 3), generator=g)), ("image", torch.randint(0, 12, (2, 4), generator=g))],
        VOCAB,
    )
    logits = model(ids[:, :-1])
    image_targets = VOCAB.is_image(ids[:, 1:])
    loss = F.cross_entropy(logits[image_targets], ids[:, 1:][image_targets])  # image tokens only
    loss.backward()
    grad_rows = model.prior.tok_emb.weight.grad.abs().sum(-1)
    assert grad_rows[ids[0, :3]].gt(0).all()  # the text rows of the shared table learn from image targets


def test_released_sorted_pair_lookup_is_exact_only_for_a_monotone_layout():
    """vocab.py decodes image ids by pairing sorted BPE ids with sorted codes (searchsorted)."""

    def sorted_pair_lookup(mapping, ids):
        bpe, img = torch.tensor(sorted(mapping)), torch.tensor(sorted(mapping.values()))
        return img[torch.searchsorted(bpe, ids)]

    codes = torch.arange(VOCAB.image_codes)
    ids = VOCAB.image_ids(codes)
    ours = {int(i): int(c) for i, c in zip(ids, codes, strict=True)}
    assert torch.equal(sorted_pair_lookup(ours, ids), VOCAB.image_codes_of(ids))
    shuffled = dict(zip(ours, torch.randperm(VOCAB.image_codes, generator=_g(5)).tolist(), strict=True))
    exact = torch.tensor([shuffled[int(i)] for i in ids])
    assert not torch.equal(sorted_pair_lookup(shuffled, ids), exact)


def test_image_span_refuses_the_wrong_number_of_tokens():
    with pytest.raises(ValueError, match="an image has 4 tokens"):
        image_span(torch.zeros(1, 3, dtype=torch.long), VOCAB)
