"""Emu3: one next-token model over one vocabulary of text tokens and vision code indices.

Paper and note:
    - Emu3, Wang et al. 2024, "Emu3: Next-Token Prediction is All You Need" (arXiv 2409.18869;
      papers/wang2024emu3.md): text (byte-level BPE) and the code indices of a VQ image/video
      tokenizer live in one vocabulary; one decoder is trained by next-token prediction on the
      mixed sequences, as released in baaivision/Emu3 @f6ea9aa.
    The model is reference_impls/chameleon.py's Chameleon (one embedding table and one output head
    over all ids; it reads only vocab.size), i.e. ar_prior.TokenPrior; its categorical draw is
    ar_prior's. What Emu3 changes is the vocabulary layout and the image's token structure.

Vocabulary layout, in the release's order (emu3/mllm/tokenization_emu3.py: SPECIAL_START_ID,
ENDOFTEXT, IMSTART, IMEND, EXTRAS = <|extra_0|>..<|extra_204|>, then the lines of
emu3_vision_tokens.txt; emu3/mllm/configuration_emu3.py: the default ids):
    [0, V_text)                         text tokens (BPE ranks)             V_text = 151,643 released
    V_text, V_text+1, V_text+2          <|endoftext|> (= pad), <|im_start|>, <|im_end|>
    V_text+3+i, i < 205                 <|extra_i|>: eol = extra_200, eof = extra_201,
                                        bos = extra_203, eos = extra_204
    V_text+208, +209, +210              <|image token|> (img), <|image start|> (boi), <|image end|> (eoi)
    V_text+211+k, k < K                 <|visual token {k:06d}|>, the vision code k   K = 32,768 released
    size V = V_text + 211 + K           (184,622 released = configuration_emu3.py vocab_size)
The released ids pad 151643, eol 151846, eof 151847, bos 151849, eos 151850, img 151851, boi 151852,
eoi 151853 are those of configuration_emu3.py; the first visual id, 151854 = 184622 - 32768, is
derived from vocab_size and the codebook size (emu3/tokenizer/configuration_emu3visionvq.py).

One image of H x W codes (emu3/train/datasets.py format_image_prompt and to_imgstr;
emu3/mllm/processing_emu3.py __call__ and to_imgstr):
    <boi> "H*W" <img> c_11 .. c_1W <eol> c_21 .. c_2W <eol> ... c_H1 .. c_HW <eol> <eof> <eoi>
"H*W" is the resolution prefix (prefix_template "{H}*{W}"), written as ordinary text; every row,
the last included, ends with <eol>. A training sample is <bos> caption image (datasets.py), and
generation ends the image with <eoi> <eos> (emu3/mllm/utils_emu3.py, the constrained-decoding
helper whose schedule allowed_next mirrors).
Model: log p(s) = sum_i log softmax(W h_i)[s_{i+1}], h = causal decoder(E[s]), with the shift of
modeling_emu3.py (logits[..., :-1] against labels[..., 1:]).

Notation (code -> release):
    text_size       V_text (regular BPE tokens)      codebook_size  K (vision codebook)
    n_extra         205 <|extra_i|> tokens           prefix_chars   the characters of "H*W"
    visual_offset   id of <|visual token 000000|>    vision_only_labels  apply_loss_on_only_vision

Left out: the BPE tokenizer (the toy maps the characters of "H*W" to fixed text ids; in the release
they are BPE tokens, whose ids are not stated here), the MoVQGAN-based tokenizer and its 4x temporal
compression (a video's frames are not modelled), chat templates, classifier-free guidance, the
transformer's sizes, RoPE, GQA and the other architecture details.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference_impls.ar_prior import filter_logits, sample_from_logits
from reference_impls.chameleon import Chameleon


@dataclass(frozen=True)
class Emu3Vocabulary:
    text_size: int  # V_text
    codebook_size: int  # K
    n_extra: int = 205  # <|extra_0|> .. <|extra_204|>
    prefix_chars: str = "0123456789*"  # toy: character j of "H*W" is text id j

    def __post_init__(self):
        if self.n_extra < 205:
            raise ValueError("the release uses <|extra_200|>..<|extra_204|>; n_extra must be >= 205")
        if self.text_size < len(self.prefix_chars):
            raise ValueError(f"text_size must hold the {len(self.prefix_chars)} prefix characters")

    @classmethod
    def released(cls) -> Emu3Vocabulary:
        """The sizes of baaivision/Emu3 (tokenization_emu3.py SPECIAL_START_ID; codebook_size 32768)."""
        return cls(text_size=151643, codebook_size=32768)

    # special tokens, in the release's order
    @property
    def pad(self) -> int:  # <|endoftext|>
        return self.text_size

    def extra(self, i: int) -> int:
        return self.text_size + 3 + i

    @property
    def eol(self) -> int:
        return self.extra(200)

    @property
    def eof(self) -> int:
        return self.extra(201)

    @property
    def bos(self) -> int:
        return self.extra(203)

    @property
    def eos(self) -> int:
        return self.extra(204)

    @property
    def img(self) -> int:  # <|image token|>: the resolution prefix ends, the codes start
        return self.text_size + 3 + self.n_extra

    @property
    def boi(self) -> int:
        return self.img + 1

    @property
    def eoi(self) -> int:
        return self.img + 2

    @property
    def visual_offset(self) -> int:
        return self.img + 3

    @property
    def size(self) -> int:
        return self.visual_offset + self.codebook_size

    def is_text(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= 0) & (ids < self.text_size)

    def is_visual(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.visual_offset) & (ids < self.size)

    def visual_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Vision codes in [0, K) -> their ids in the shared vocabulary."""
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"vision codes must lie in [0, {self.codebook_size})")
        return codes + self.visual_offset

    def codes_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Inverse of visual_ids; refuses any id outside the visual block."""
        if not bool(self.is_visual(ids).all()):
            raise ValueError(f"ids outside the visual range [{self.visual_offset}, {self.size}) are not vision codes")
        return ids - self.visual_offset

    def text_of(self, s: str) -> list[int]:
        return [self.prefix_chars.index(c) for c in s]


def image_tokens(codes: torch.Tensor, vocab: Emu3Vocabulary) -> torch.Tensor:
    """(H, W) codes -> 1-D ids: <boi> "H*W" <img> rows each ended by <eol>, then <eof> <eoi>."""
    h, w = codes.shape
    rows = torch.cat([vocab.visual_ids(codes), codes.new_full((h, 1), vocab.eol)], dim=1)  # (H, W + 1)
    head = [vocab.boi, *vocab.text_of(f"{h}*{w}"), vocab.img]
    return torch.cat([codes.new_tensor(head), rows.reshape(-1), codes.new_tensor([vocab.eof, vocab.eoi])])


def document(caption: torch.Tensor, codes: torch.Tensor, vocab: Emu3Vocabulary, *, eos: bool = True) -> torch.Tensor:
    """A text-to-image sample: <bos> caption image [<eos>] (datasets.py __getitem__; utils_emu3.py)."""
    if not bool(vocab.is_text(caption).all()):
        raise ValueError("the caption must hold text ids only")
    tail = [vocab.eos] if eos else []
    return torch.cat([caption.new_tensor([vocab.bos]), caption, image_tokens(codes, vocab), caption.new_tensor(tail)])


def parse_image(ids: torch.Tensor, vocab: Emu3Vocabulary) -> torch.Tensor:
    """Inverse of image_tokens on a 1-D sequence holding one image: read "H*W", split rows at <eol>."""
    seq = ids.tolist()
    start, img = seq.index(vocab.boi), seq.index(vocab.img)
    h, w = ("".join(vocab.prefix_chars[i] for i in seq[start + 1 : img])).split("*")
    h, w = int(h), int(w)
    body = ids[img + 1 : img + 1 + h * (w + 1)].view(h, w + 1)  # (H, W + 1)
    if not bool((body[:, -1] == vocab.eol).all()):
        raise ValueError("every row of an image ends with <eol>")
    if seq[img + 1 + h * (w + 1) : img + 3 + h * (w + 1)] != [vocab.eof, vocab.eoi]:
        raise ValueError("an image ends with <eof> <eoi>")
    return vocab.codes_of(body[:, :-1])  # (H, W)


def allowed_next(offset: int, h: int, w: int, vocab: Emu3Vocabulary) -> torch.Tensor:
    """(V,) bool: the ids allowed at `offset` positions after <img> (utils_emu3.py's schedule)."""
    allowed = torch.zeros(vocab.size, dtype=torch.bool)
    end = (w + 1) * h
    if offset <= end and offset % (w + 1) == 0:
        allowed[vocab.eol] = True
    elif offset == end + 1:
        allowed[vocab.eof] = True
    elif offset == end + 2:
        allowed[vocab.eoi] = True
    elif offset == end + 3:
        allowed[vocab.eos] = True
    elif offset > end + 3:
        allowed[vocab.pad] = True
    else:
        allowed[vocab.visual_offset :] = True
    return allowed


def vision_only_labels(ids: torch.Tensor, vocab: Emu3Vocabulary, ignore_index: int = -100) -> torch.Tensor:
    """train.py's default apply_loss_on_only_vision: labels kept on visual ids only, the rest ignored."""
    return torch.where(vocab.is_visual(ids), ids, torch.full_like(ids, ignore_index))


def next_token_loss(
    model: Chameleon, ids: torch.Tensor, labels: torch.Tensor | None = None, *, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of logits[:, :-1] against labels[:, 1:] (labels = ids by default), ignore_index -100."""
    labels = ids if labels is None else labels
    logits = model(ids)[:, :-1]  # (B, N - 1, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), reduction=reduction)


@torch.no_grad()
def generate_image(
    model: Chameleon,
    caption: torch.Tensor,
    h: int,
    w: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Text-to-image: prompt <bos> caption <boi> "H*W" <img> (processing_emu3.py, mode 'G'), then draw
    the image under allowed_next until <eos>. caption (B, L) -> (B, L + prompt + H (W + 1) + 3)."""
    vocab: Emu3Vocabulary = model.vocab
    b = caption.shape[0]
    head = caption.new_tensor([vocab.boi, *vocab.text_of(f"{h}*{w}"), vocab.img]).expand(b, -1)
    seq = torch.cat([caption.new_full((b, 1), vocab.bos), caption, head], dim=1)  # (B, P)
    logits, cache = model.prior.forward_incremental(seq)
    n_new = h * (w + 1) + 3  # rows with their <eol>, then <eof> <eoi> <eos>
    for offset in range(1, n_new + 1):
        last = logits[:, -1].masked_fill(~allowed_next(offset, h, w, vocab), float("-inf"))  # (B, V)
        nxt = sample_from_logits(filter_logits(last, temperature), generator)  # (B,)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if offset < n_new:
            logits, cache = model.prior.forward_incremental(nxt[:, None], cache)
    return seq
