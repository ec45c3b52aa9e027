"""Claims a note may not make about our work: what atlas.yml's profile leaves open stays open.

The profile fixes our latent (a VQ-VAE codebook) and our prior (autoregressive over its indices);
it does not say whether, or on what, that prior is conditioned. A note that calls our setting
conditional or unconditional therefore says more than is known. The rule is mechanical, on
sentences of the prose (code and math already blanked by `atlas.markdown.scan`):

- a sentence *speaks of our work* when it contains `our`, `ours`, `we` or `us` as a word;
- it *states a conditioning* when it contains `conditional`/`unconditional` (any form, also
  `class-conditional`), a hyphenated `<thing>-conditioned`/`<thing>-conditional`, a task name
  such as `text-to-image` or `class-to-image`, or
  `conditioned on` followed within three words by a kind of condition (class, label, text, caption,
  prompt, image, segmentation, layout, frame, audio, speaker, lyrics, metadata, scene);
- it *states an architecture* when our work is said to be one: `our`/`ours is a` followed within two
  words by transformer, PixelCNN, WaveNet, RNN, LSTM, convolutional or recurrent (the profile fixes
  only that our prior is autoregressive over the tokens, not what network computes it);
- a sentence that speaks of our work and states either is reported, unless it is visibly hedged
  (`if`, `whether`, `unknown`, `not known`, `were`), which is how a note says what would follow
  for a conditioned or an unconditioned prior without claiming either.

`claims(prose)` is pure: text in, `(line, message)` pairs out, lines 1-based within the text.
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
ARCHITECTURES = r"(?:transformers?|pixelcnn\+*|wavenet|rnns?|lstms?|convolutional|recurrent)"
ARCHITECTURE = re.compile(
    rf"\b(?:our|ours\s+is\s+an?)\s+(?:[\w-]+\s+){{0,2}}?{ARCHITECTURES}\b",
    re.IGNORECASE,
)
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


def claims(prose: str) -> list[tuple[int, str]]:
    """Sentences that call our work conditional or unconditional, or name its prior's network: (line, what is wrong)."""
    out = []
    for line, sentence in sentences(prose):
        if not OURS.search(sentence) or HEDGE.search(sentence):
            continue
        m = CONDITIONING.search(sentence)
        if m:
            out.append(
                (
                    line,
                    f"a sentence about our work says '{m.group(0)}', "
                    "but whether and on what our prior is conditioned is not known",
                )
            )
            continue
        m = ARCHITECTURE.search(sentence)
        if m:
            out.append(
                (
                    line,
                    f"a sentence about our work says '{m.group(0)}', but only that our prior is "
                    "autoregressive over the tokens is known, not its network",
                )
            )
    return out
