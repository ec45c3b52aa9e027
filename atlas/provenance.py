"""Every number traceable to its source: the rule that holds a note's Method to its listed numbers.

A note that lists its key numbers (a `numbers:` key in its front matter, each `{what, value,
source}`) may write in its `## Method` section only numbers among the listed values. Aside are:
numbers inside math, code, citations, link targets and URLs; years (1900 to 2099); integers
under 10 (counts in prose); numbers after Eq./Sec./Table/Fig./App./Alg. (references to the
paper); numbers that are part of a name (GPT-2, VQ-VAE-2, T5, v1.5), ordinals and dimensions
(2nd, 3D). "16x16" is checked as 16 and 16, "1.4B" as 1.4, "16,384" as 16384.
"""

from __future__ import annotations

import re

from atlas import markdown as md
from atlas.model import Note
from atlas.problems import Code, Problem

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_REFERENCE = re.compile(
    r"(?:Eqs?\.|Equations?|Secs?\.|Sections?|Tables?|Tab\.|Figs?\.|Figures?|App\.|Appendix|"
    r"Alg\.|Algorithms?)\s*[(\d.,\s\-\u2013)and]*$"
)
_ASIDE_SUFFIX = re.compile(r"(?:st|nd|rd|th|D)\b")


def numeric(token: str) -> float | None:
    """The value of '1,024' or '0.25'; None for what only looks like a number ('3.2.3', a version or a section)."""
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


def listed_values(note: Note) -> set[float]:
    values: set[float] = set()
    for n in note.meta.numbers:
        if isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            values.add(float(n.value))
        values |= {v for t in NUMBER.findall(str(n.value)) if (v := numeric(t)) is not None}
    return values


def method_numbers(text: str) -> list[tuple[str, int]]:
    """(number as written, 1-based line in text) of every number of `text` the rule holds to a listing."""
    prose = md.scan(text).prose
    for g in md.parse_citations(text, prose):
        prose = prose[: g.start] + " " * (g.end - g.start) + prose[g.end :]
    prose = re.sub(r"\]\([^)\n]*\)|https?://\S+", lambda m: " " * len(m.group(0)), prose)
    out = []
    for m in NUMBER.finditer(prose):
        token, before, after = m.group(0), prose[: m.start()], prose[m.end() :]
        b = before[-1:]
        if b.isalpha() and not (b in "x\u00d7" and before[-2:-1].isdigit()):
            continue  # a name: T5, v1.5
        if b == "-" and before[-2:-1].isalpha():
            continue  # a name: GPT-2, VQ-VAE-2
        if after[:1].isalpha() and _ASIDE_SUFFIX.match(after):
            continue  # an ordinal or a dimension: 2nd, 3D
        value = numeric(token)
        if value is None:
            continue  # a dotted name or section: v1.2.3, 3.2.3
        if (value.is_integer() and value < 10) or (len(token) == 4 and token.isdigit() and 1900 <= value <= 2099):
            continue
        if _REFERENCE.search(before[-40:]):
            continue
        out.append((token, prose.count("\n", 0, m.start()) + 1))
    return out


def check_numbers(note: Note) -> list[Problem]:
    """Only for a note that lists its numbers (a `numbers:` key in its front matter)."""
    if "numbers" not in note.key_lines:
        return []
    method = next(((line, content) for t, line, content in md.sections(note.body) if t == "Method"), None)
    if method is None:
        return []
    heading, content = method
    first = note.body_line + heading  # the line after the heading; content is stripped, find its offset
    lead = note.body.splitlines()[heading:]
    skipped = next((i for i, ln in enumerate(lead) if ln.strip()), 0)
    listed = listed_values(note)
    out = []
    for token, line in method_numbers(content):
        if numeric(token) not in listed:
            out.append(
                Problem(
                    note.where,
                    first + skipped + line - 1,
                    f"number '{token}' in the Method section is not among the note's numbers",
                    "each number of the Method listed under numbers: with its source (years, counts under 10, "
                    "Eq./Sec./Table numbers, names like GPT-2, math and citations aside)",
                    Code.NUMBER,
                )
            )
    return out
