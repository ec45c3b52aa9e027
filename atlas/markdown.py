"""What the loader needs to know of a note's Markdown body: sections, citations, math spans.

Pandoc's rules, kept small: code (fenced or inline) is opaque; `$$...$$` is display math;
`$...$` is inline math when the opening `$` is followed by a non-space and the closing `$` is
preceded by a non-space and not followed by a digit; `\\$` is a literal dollar. Citations are
`[@key]`, `[see @key, p. 3; @other]` and textual `@key`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CITE = re.compile(r"(?<![\w@.\\`])@([A-Za-z0-9_][\w:.#$%&+?<>~/-]*)")
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


def citations(prose: str) -> list[tuple[str, int]]:
    """(key, 1-based body line) of every citation in already-scanned prose."""
    out = []
    for m in CITE.finditer(prose):
        key = m.group(1).rstrip(".:,;?!/-~#$%&+<>")
        out.append((key, prose.count("\n", 0, m.start()) + 1))
    return out


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
