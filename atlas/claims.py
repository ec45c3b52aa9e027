"""The our-work rule, one for notes, related texts and the catalogue: a sentence about our work states
only what atlas.yml's `our_work` profile states.

The profile fixes our latent (a VQ-VAE codebook) and our prior (autoregressive over its indices);
it leaves open whether and on what that prior is conditioned, its network, how it is trained and
sampled, its size, its generation order and the modality. The rule is mechanical, on sentences of
the prose (code and math already blanked by `atlas.markdown.scan`):

- a sentence *speaks of our work* when it contains `our`, `ours`, `we` or `us` as a word;
- it *states a conditioning* when it contains `conditional`/`unconditional` (any form), a hyphenated
  `<thing>-conditioned`, a task name such as `text-to-image`, or `conditioned on` followed within
  three words by a kind of condition (class, text, caption, prompt, image, frame, ...);
- it *states* an architecture, a training choice, a sampler, a size or an order when, in the
  same clause (no `,;:()` or `where`/`while`/`whereas`/`but` between), `our`/`ours` is followed
  within eight words by a word of that kind (transformer, decoder-only, adversarial loss, top-k,
  one token per forward pass, 300M parameters, raster order, ...): "our prior is a small
  decoder-only transformer" states a size and a network, "unlike our work, LlamaGen uses a
  transformer" states nothing about ours;
- it *states a modality* the profile does not set when such a clause names images, video, audio,
  music, speech or 3-D shapes;
- a sentence that speaks of our work and states any of these is reported, unless it is visibly
  hedged (`if`, `whether`, `unknown`, `not known`, `were`), or the profile states it: a word
  found in the profile's own text (summary, contribution, or the optional `network`, `training`,
  `sampling`, `size`, `order` fields; `modality`, `conditioning`) may be said.

`claims(prose, profile)` is pure: text in, `(line, message)` pairs out, lines 1-based within the text.
"""

from __future__ import annotations

import re

OURS = re.compile(r"\b(?:our|ours|we|us)\b", re.IGNORECASE)
KINDS = (
    r"(?:class|classes|label|labels|text|texts|caption|captions|prompt|prompts|image|images|segmentation"
    r"|layout|layouts|frame|frames|audio|speaker|speakers|lyrics|metadata|scene|scenes)"
)
CONDITIONING = re.compile(
    r"\b(?:un)?conditional(?:ly)?\b"  # conditional, unconditional, class-conditional, ...
    r"|\b\w+-condition(?:ed|al)\b"  # text-conditioned, label-conditioned
    r"|\b(?:text|class|label|caption|prompt)-to-\w+"  # text-to-image, text-to-token
    rf"|\bconditioned\s+on\s+(?:\w+\s+){{0,3}}?{KINDS}\b",
    re.IGNORECASE,
)
ARCHITECTURES = (
    r"(?:transformers?|decoder-only|encoder-decoder|pixelcnn\+*|wavenet|rnns?|lstms?|convolutional|recurrent"
    r"|u-?nets?|mlps?|bidirectional|causal(?: attention| mask)?|self-attention|cross-attention)"
)
ARCHITECTURE = re.compile(
    rf"\b(?:our|ours\s+is\s+an?)\s+(?:[\w-]+\s+){{0,2}}?{ARCHITECTURES}\b",
    re.IGNORECASE,
)
# what a clause about our work may state only when the profile does (kind -> pattern)
KINDS_OF_CLAIM = {
    "network": ARCHITECTURES,
    "training": (
        r"(?:adversarial|perceptual|discriminator|lpips|gan loss|k-?means|label smoothing|dropout|early stopping"
        r"|learning rate|ema updates?|exponential moving average|(?:trained|fitted) on (?:one|a single|\d[\d,.]*))"
    ),
    "sampling": (
        r"(?:top-?[kp]|nucleus|temperature|beam search|greedy|kv[ -]cache|key-value cache"
        r"|classifier-free|(?:one|a) (?:token|step) per (?:forward )?pass|per forward pass)"
    ),
    "size": (
        r"(?:\d[\d,.]*\s*(?:[mb]illion|[mbk]\b|parameters|layers|heads|codes|tokens)|parameters|(?:small|large|tiny|"
        r"base|huge)\s+(?:model|prior|transformer|decoder|network|codebook))"
    ),
    "order": (
        r"(?:raster|scan(?:line)? order|left-to-right|random(?:ised|ized)? order|(?:one )?fixed order|next-scale"
        r"|coarse-to-fine|row-major|zig-?zag|position(?:al)? (?:table|embeddings?|encodings?)|learned positions?)"
    ),
}
MODALITIES = {
    "image": r"images?|pixels?|photo\w*",
    "video": r"videos?|video clips?|frames?",
    "audio": r"audio|speech|sounds?|waveforms?",
    "music": r"music\w*|songs?",
    "3d": r"3-?d|point clouds?|voxels?|signed distance",
    "science": r"cryo-?em|molecul\w*|protein\w*",
}
CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:where|while|whereas|but|unlike|than)\b", re.IGNORECASE)
HEDGE = re.compile(r"\b(?:if|whether|unknown|not known|were)\b", re.IGNORECASE)
# abbreviations whose full stop does not end a sentence
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|cf|vs|et al|Fig|Figs|Sec|Secs|Eq|Eqs|App|Tab|resp|approx|incl)\.", re.IGNORECASE)
_END = re.compile(r"[.!?](?=\s|$)")


def sentences(prose: str) -> list[tuple[int, str]]:
    """(1-based line of its start, text) of each sentence; a blank line or heading also ends one."""
    masked = _ABBREV.sub(lambda m: m.group(0)[:-1] + "\0", prose)  # hide abbreviation stops
    out: list[tuple[int, str]] = []
    start = 0
    cuts = [m.end() for m in _END.finditer(masked)] + [m.start() for m in re.finditer(r"\n\s*\n", masked)]
    cuts += [
        i for m in re.finditer(r"(?m)^#{1,6}\s.*$", masked) for i in (m.start(), m.end())
    ]  # a heading is its own chunk
    for cut in sorted(set(cuts)) + [len(masked)]:
        chunk = masked[start:cut]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            line = masked.count("\n", 0, start + lead) + 1
            out.append((line, " ".join(chunk.split()).replace("\0", ".")))
        start = cut
    return out


def _attributed(clause: str, pattern: str) -> re.Match | None:
    """The first word of the kind that `our`/`ours` governs in the clause (within eight words after it)."""
    return re.search(rf"\b(?:our|ours|we)\b(?:\W+[\w-]+){{0,8}}?\W+({pattern})\b", clause, re.IGNORECASE)


SHARED = re.compile(r"\b(?:shares?|shared with|as (?:we|ours) do)\b", re.IGNORECASE)
NEGATED = re.compile(r"\b(?:lacks?|not|no|cannot|never|unlike|without)\b", re.IGNORECASE)
# where a sentence turns from our work back to the paper's own instance ("..., here a causal transformer")
INSTANCE = re.compile(r"[,;(]\s*(?:here|in (?:this|the) paper|in its case)\b|\bhere\s*,", re.IGNORECASE)
IS_OURS = re.compile(r"^(.*?)\b(?:is|are)\s+(?:exactly\s+|essentially\s+|simply\s+)?(?:our|ours)\b", re.IGNORECASE)


def _about_ours(sentence: str, *, similarity: bool) -> list[tuple[str, bool]]:
    """The stretches of a sentence that describe our work: (text, whether a word must follow `our` closely).

    Besides the clauses that name our work (a word counts when `our` governs it), a whole stretch
    describes our work when a colon joins it to a short clause naming ours ("the same as ours: a
    transformer ..."), when it is the subject of "... is our prior", and, in the Similarity section,
    when the sentence says what the paper shares with ours.
    """
    out: list[tuple[str, bool]] = []
    if ":" in sentence:
        left, right = sentence.split(":", 1)
        right = INSTANCE.split(right)[0]
        if OURS.search(left) and not OURS.search(right) and len(left.split()) <= 12 and not NEGATED.search(left):
            out.append((right, False))
        if OURS.search(right) and not OURS.search(left) and len(right.split()) <= 10:
            out.append((left, False))
    for clause in CLAUSE_BREAK.split(sentence):
        m = IS_OURS.match(clause)
        if m and m.group(1).strip():
            out.append((m.group(1), False))
    if similarity and SHARED.search(sentence):
        out.append((INSTANCE.split(sentence)[0], False))
    return out + [(c, True) for c in CLAUSE_BREAK.split(sentence) if OURS.search(c)]


def _find(text: str, pattern: str, *, close: bool) -> re.Match | None:
    return _attributed(text, pattern) if close else re.search(rf"\b({pattern})\b", text, re.IGNORECASE)


def _fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower())


def claims(prose: str, profile=None) -> list[tuple[int, str]]:
    """Sentences that say of our work what the profile does not: (line, what is wrong).

    `profile` is atlas.yml's our_work (None: the bare profile, a VQ codebook and an autoregressive
    prior, nothing else set).
    """
    conditioning = list(getattr(profile, "conditioning", []) or [])
    modality = list(getattr(profile, "modality", []) or [])
    stated = _fold(" ".join(str(getattr(profile, f, "") or "") for f in ("summary", "contribution", *KINDS_OF_CLAIM)))
    summary = getattr(profile, "summary", None) or "a VQ-VAE codebook with an autoregressive prior over its indices"
    out = []
    similarity = False
    for line, sentence in sentences(prose):
        if sentence.startswith("#"):
            similarity = "similarit" in sentence.lower()
            continue
        if HEDGE.search(sentence) or not (OURS.search(sentence) or (similarity and SHARED.search(sentence))):
            continue
        m = CONDITIONING.search(sentence) if OURS.search(sentence) else None
        if m and not conditioning:
            out.append(
                (
                    line,
                    f"a sentence about our work says '{m.group(0)}', "
                    "but whether and on what our prior is conditioned is not known",
                )
            )
            continue
        m = ARCHITECTURE.search(sentence) if OURS.search(sentence) else None
        if m and _fold(m.group(0).split()[-1]).strip() not in stated:
            out.append(
                (
                    line,
                    f"a sentence about our work says '{m.group(0)}', but only that our prior is "
                    "autoregressive over the tokens is known, not its network",
                )
            )
            continue
        found = None
        for clause, close in _about_ours(sentence, similarity=similarity):
            for kind, pattern in KINDS_OF_CLAIM.items():
                hit = _find(clause, pattern, close=close)
                if hit and _fold(hit.group(1)).strip() not in stated:
                    found = (kind, hit.group(1))
                    break
            if found is None:
                for name, pattern in MODALITIES.items():
                    hit = None if name in modality else _find(clause, pattern, close=close)
                    if hit:
                        found = ("modality", hit.group(1))
                        break
            if found:
                break
        if found:
            kind, word = found
            out.append(
                (
                    line,
                    f"a sentence about our work says '{word}' (its {kind}), but the our-work profile states only "
                    f"{summary}",
                )
            )
    return out
