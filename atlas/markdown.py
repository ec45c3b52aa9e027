"""The Markdown of note bodies as the tooling reads it: sections, math spans and citations.

Pandoc's rules, kept small: code (fenced or inline) is opaque; `$$...$$` is display math;
`$...$` is inline math when the opening `$` is followed by a non-space and the closing `$` is
preceded by a non-space and not followed by a digit; `\\$` is a literal dollar.

Citations, the one grammar of the check, the site and the export: a bracketed group
`[see @key, p. 3; -@other]` (items split by `;`, each with exactly one key, an optional prefix,
an optional locator, `-@` suppressing the author) and a textual `@key` anywhere else in prose;
`\\@` is a literal at sign. A key ends before trailing punctuation (`@key.` cites `key`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CITE = re.compile(r"(?<![\w@.\\`])@([A-Za-z0-9_][\w:.#$%&+?<>~/-]*)")
BRACKET = re.compile(r"\[([^\[\]]*@[^\[\]]*)\](?![(\[:])")  # [..@..] that is not a link or a reference
ESCAPED_AT = re.compile(r"\\@")
KEY_TRAILER = ".:,;?!/-~#$%&+<>"  # punctuation that ends a sentence, not a key
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class MathSpan:
    line: int  # 1-based within the body
    tex: str
    display: bool


@dataclass
class Scan:
    prose: str  # the body with code and math blanked (newlines kept)
    math: list[MathSpan]
    stray_dollars: list[int]  # body lines with a `$` that opens no math


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def scan(body: str) -> Scan:
    # fenced code blocks, then inline code
    text = re.sub(r"(?ms)^(```|~~~).*?^\1[^\n]*$", lambda m: _blank(m.group(0)), body)
    text = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", lambda m: _blank(m.group(0)), text, flags=re.S)
    math: list[MathSpan] = []

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def take(m: re.Match, display: bool) -> str:
        math.append(MathSpan(line_of(m.start()), m.group(1), display))
        return _blank(m.group(0))

    text = re.sub(r"\\\$", "  ", text)
    text = re.sub(r"\$\$(.+?)\$\$", lambda m: take(m, True), text, flags=re.S)
    text = re.sub(r"\$(?!\s)((?:[^$\\\n]|\\.|\n(?!\s*\n))+?)(?<!\s)\$(?!\d)", lambda m: take(m, False), text)
    stray = sorted({line_of(m.start()) for m in re.finditer(r"\$", text)})
    math.sort(key=lambda s: s.line)
    return Scan(text, math, stray)


@dataclass(frozen=True)
class Cite:
    """One cited key: `at` is the offset of its '@', `end` the offset after the key."""

    key: str
    at: int
    end: int
    prefix: str = ""  # text before the key inside a bracketed group ('see')
    locator: str = ""  # text after the key inside a bracketed group (', p. 3')
    suppress_author: bool = False  # written -@key: the year only


@dataclass(frozen=True)
class CiteGroup:
    """A citation as written: `[...]` with one or more keys (bracketed), or a textual `@key`."""

    start: int  # offsets of the whole group in the text
    end: int
    cites: tuple[Cite, ...]
    bracketed: bool


def _keys_in(prose: str, start: int, end: int) -> list[tuple[int, int, str]]:
    out = []
    for m in CITE.finditer(prose, start, end):
        key = m.group(1).rstrip(KEY_TRAILER)
        out.append((m.start(), m.start(1) + len(key), key))
    return out


def parse_citations(text: str, prose: str | None = None) -> list[CiteGroup]:
    """Every citation of `text`, in order; `prose` is `scan(text).prose` (code and math blanked).

    A bracket is a citation group when each of its `;`-separated parts holds exactly one key;
    otherwise its keys count as textual citations.
    """
    prose = scan(text).prose if prose is None else prose
    groups: list[CiteGroup] = []
    taken: list[tuple[int, int]] = []
    for b in BRACKET.finditer(prose):
        parts, pos = [], b.start(1)
        for part in prose[b.start(1) : b.end(1)].split(";"):
            end = pos + len(part)
            found = _keys_in(prose, pos, end)
            if len(found) != 1:
                break
            parts.append((pos, end, found[0]))
            pos = end + 1
        else:
            cites = []
            for start, end, (at, kend, key) in parts:
                suppress = at > start and text[at - 1] == "-"
                prefix = text[start : at - 1 if suppress else at].strip()
                cites.append(Cite(key, at, kend, prefix, text[kend:end].strip(), suppress))
            groups.append(CiteGroup(b.start(), b.end(), tuple(cites), True))
            taken.append((b.start(), b.end()))
    for at, kend, key in _keys_in(prose, 0, len(prose)):
        if not any(s <= at < e for s, e in taken):
            groups.append(CiteGroup(at, kend, (Cite(key, at, kend),), False))
    return sorted(groups, key=lambda g: g.start)


def literal_ats(prose: str, groups: list[CiteGroup]) -> list[tuple[int, int]]:
    """Spans of the escapes `\\@` outside citation groups."""
    return [
        (m.start(), m.end())
        for m in ESCAPED_AT.finditer(prose)
        if not any(g.start <= m.start() < g.end for g in groups)
    ]


def citations(prose: str) -> list[tuple[str, int]]:
    """(key, 1-based line) of every citation in already-scanned prose."""
    return [(c.key, prose.count("\n", 0, c.at) + 1) for g in parse_citations(prose, prose) for c in g.cites]


def sections(body: str) -> list[tuple[str, int, str]]:
    """(title, 1-based body line, text) for each level-2 heading; fenced code is skipped."""
    out: list[tuple[str, int, list[str]]] = []
    fence = None
    for i, line in enumerate(body.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence and stripped.startswith(fence) else (fence or stripped[:3])
        m = HEADING.match(line) if fence is None else None
        if m and len(m.group(1)) == 2:
            out.append((m.group(2), i, []))
        elif out:
            out[-1][2].append(line)
    return [(t, ln, "\n".join(lines).strip()) for t, ln, lines in out]


def unbalanced_braces(tex: str) -> bool:
    depth = 0
    for m in re.finditer(r"\\.|[{}]", tex):
        tok = m.group(0)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth < 0:
                return True
    return depth != 0


def word_count(text: str) -> int:
    return len(re.findall(r"[A-Za-z0-9][\w'-]*", text))


RAW_CITE = re.compile(r"\\(cite[a-zA-Z]*)\*?(?:\[[^\]]*\])*\{([^}]*)\}")


def raw_latex_citations(prose: str) -> list[tuple[int, str, list[str]]]:
    """(1-based body line, command, keys) of every LaTeX citation command left in scanned prose."""
    out = []
    for m in RAW_CITE.finditer(prose):
        keys = [k.strip() for k in m.group(2).split(",") if k.strip()]
        out.append((prose.count("\n", 0, m.start()) + 1, m.group(1), keys))
    return out
