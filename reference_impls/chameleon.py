"""Chameleon: one token space. Image codes and text tokens share one vocabulary and one causal transformer.

Paper and note:
    - Chameleon, Chameleon Team 2024, "Chameleon: Mixed-Modal Early-Fusion Foundation Models"
      (papers/chameleonteam2024chameleon.md): early fusion of text and VQ image tokens in one
      sequence, as released in facebookresearch/chameleon (chameleon/inference/vocab.py,
      chameleon.py, image_tokenizer.py).
    The transformer is the shared token prior reference_impls/ar_prior.py (TokenPrior: one token
    embedding table, one output head, causal blocks; its categorical draw); the image codes come
    from any VQ tokenizer (reference_impls/vq.py).

Vocabulary layout (one table of V = V_text + K + 2 rows):
    [0, V_text)                text tokens
    [V_text, V_text + K)       image code k  <->  id V_text + k
    V_text + K, V_text + K + 1 <boi>, <eoi>: an image is  <boi> id(c_1) .. id(c_N) <eoi>  with N fixed
    (the released model: 512 x 512 px -> a 32 x 32 grid -> N = 1024 ids; K = 8192 inside V = 65,536)
Model: one next-token distribution over all V ids at every position,
    log p(s) = sum_i log softmax(W h_i)[s_{i+1}],    h = causal transformer(E[s])
so a text token may follow image tokens and vice versa; E and W are shared by both modalities.
Decoding (as the released generator does): after <boi> only image ids are allowed for N steps,
then <eoi> is forced; outside an image, image ids and <eoi> are masked out.

Notation (code -> paper / released code):
    text_size  text part of the BPE vocabulary      image_codes   image codebook size K
    boi, eoi   <racm3:break>, <eoss> in vocab.py    image_tokens  N, tokens per image

Left out: the BPE tokenizer and the VQ image tokenizer themselves, query-key normalisation and the
other stability changes, classifier-free guidance over text and image conditions, and model sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from reference_impls.ar_prior import TokenPrior, filter_logits, sample_from_logits


@dataclass(frozen=True)
class MixedVocabulary:
    text_size: int  # V_text
    image_codes: int  # K
    image_tokens: int  # N, ids between <boi> and <eoi>

    @property
    def image_offset(self) -> int:
        return self.text_size

    @property
    def boi(self) -> int:
        return self.text_size + self.image_codes

    @property
    def eoi(self) -> int:
        return self.boi + 1

    @property
    def size(self) -> int:
        return self.eoi + 1

    def is_image(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.image_offset) & (ids < self.boi)

    def is_text(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= 0) & (ids < self.text_size)

    def image_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes in [0, K) -> their ids in the shared vocabulary."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.image_codes):
            raise ValueError(
                f"image codes must lie in [0, {self.image_codes}); got {int(codes.min())}..{int(codes.max())}"
            )
        return codes + self.image_offset

    def image_codes_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Inverse of image_ids; refuses any id that is not an image id."""
        if not bool(self.is_image(ids).all()):
            raise ValueError(
                f"ids outside the image range [{self.image_offset}, {self.boi}) cannot be decoded as image codes"
            )
        return ids - self.image_offset


def image_span(codes: torch.Tensor, vocab: MixedVocabulary) -> torch.Tensor:
    """(B, N) image codes -> (B, N + 2) ids: <boi> codes <eoi>."""
    if codes.shape[1] != vocab.image_tokens:
        raise ValueError(f"an image has {vocab.image_tokens} tokens; got {codes.shape[1]}")
    b = codes.shape[0]
    return torch.cat(
        [codes.new_full((b, 1), vocab.boi), vocab.image_ids(codes), codes.new_full((b, 1), vocab.eoi)], dim=1
    )


def interleave(segments: list[tuple[str, torch.Tensor]], vocab: MixedVocabulary) -> torch.Tensor:
    """[("text", (B, L) ids) | ("image", (B, N) codes), ...] -> one (B, total) id sequence."""
    parts = []
    for kind, x in segments:
        if kind == "text":
            if not bool(vocab.is_text(x).all()):
                raise ValueError("text segments must hold text ids only")
            parts.append(x)
        elif kind == "image":
            parts.append(image_span(x, vocab))
        else:
            raise ValueError(f"segment kind {kind!r}; expected 'text' or 'image'")
    return torch.cat(parts, dim=1)


class Chameleon(nn.Module):
    """A causal LM over the mixed vocabulary: ar_prior.TokenPrior with a single embedding table and head."""

    def __init__(self, vocab: MixedVocabulary, *, dim: int = 32, depth: int = 2, n_heads: int = 4, max_len: int = 128):
        super().__init__()
        self.vocab = vocab
        self.prior = TokenPrior(vocab.size, dim, depth, n_heads, max_len)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.prior(ids)  # (B, N, V): logits[:, i] predicts ids[:, i + 1]


def allowed_next(ids: torch.Tensor, vocab: MixedVocabulary) -> torch.Tensor:
    """(B, N) ids so far -> (B, V) bool: which ids may come next (image mode after <boi>, text mode otherwise)."""
    b = ids.shape[0]
    allowed = torch.zeros(b, vocab.size, dtype=torch.bool)
    for i in range(b):
        row = ids[i]
        opened = (row == vocab.boi).nonzero()
        closed = (row == vocab.eoi).nonzero()
        last_boi = int(opened[-1]) if len(opened) else -1
        last_eoi = int(closed[-1]) if len(closed) else -1
        if last_boi > last_eoi:  # inside an image
            if len(row) - 1 - last_boi < vocab.image_tokens:
                allowed[i, vocab.image_offset : vocab.boi] = True
            else:
                allowed[i, vocab.eoi] = True
        else:
            allowed[i, : vocab.text_size] = True
            allowed[i, vocab.boi] = True
    return allowed


@torch.no_grad()
def generate_mixed(
    model: Chameleon,
    prefix: torch.Tensor,
    n_new: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend (B, P) ids by n_new mixed-modal tokens, switching modality at <boi> and <eoi>: (B, P + n_new)."""
    seq = prefix
    logits, cache = model.prior.forward_incremental(prefix)
    for step in range(n_new):
        last = logits[:, -1].masked_fill(~allowed_next(seq, model.vocab), float("-inf"))  # (B, V)
        nxt = sample_from_logits(filter_logits(last, temperature), generator)  # (B,)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if step < n_new - 1:
            logits, cache = model.prior.forward_incremental(nxt[:, None], cache)
    return seq
