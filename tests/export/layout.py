"""Where text lands in a compiled two-column PDF: lines from `pdftotext -bbox-layout`, and the columns
a stretch of them takes.

A *column* is the kit's body height (9.0 in, `\\textheight` of aaai2026.sty) of one of the two
columns; a stretch of text that fills the right column of page 1 below the title block and half of
the left column of page 2 takes the sum of those two heights over 9.0 in.
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

BODY_HEIGHT = 9.0 * 72  # the kit's \textheight in PDF points
X = "http://www.w3.org/1999/xhtml"  # the namespace of pdftotext's XHTML


@dataclass(frozen=True)
class Line:
    page: int  # 1-based
    column: int  # 0 left, 1 right, -1 spanning both (the title block, a table*)
    top: float  # PDF points from the top of the page
    bottom: float
    text: str


def lines(pdf: Path) -> list[Line]:
    """Every text line of the PDF, in reading order: page, then column, then top to bottom."""
    xml = subprocess.run(
        ["pdftotext", "-bbox-layout", pdf.name, "-"], cwd=pdf.parent, capture_output=True, text=True, check=True
    ).stdout
    out = []
    for number, page in enumerate(ET.fromstring(xml).iter(f"{{{X}}}page"), start=1):
        middle = float(page.get("width")) / 2
        for line in page.iter(f"{{{X}}}line"):
            x0, x1 = float(line.get("xMin")), float(line.get("xMax"))
            column = 0 if x1 <= middle + 2 else 1 if x0 >= middle - 2 else -1
            words = " ".join(w.text or "" for w in line.iter(f"{{{X}}}word"))
            out.append(Line(number, column, float(line.get("yMin")), float(line.get("yMax")), words))
    return sorted(out, key=lambda ln: (ln.page, ln.column, ln.top))


def columns(stretch: list[Line]) -> float:
    """The columns a stretch of lines takes: per page and column, its first line's top to its last line's bottom."""
    spans: dict[tuple[int, int], tuple[float, float]] = {}
    for ln in stretch:
        top, bottom = spans.get((ln.page, ln.column), (ln.top, ln.bottom))
        spans[(ln.page, ln.column)] = (min(top, ln.top), max(bottom, ln.bottom))
    return sum(b - t for (_, col), (t, b) in spans.items() if col >= 0) / BODY_HEIGHT


def fold(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def index(found: list[Line], heading: str, start: int = 0) -> int:
    """The index of the first line from `start` that reads as the heading (case and spacing folded)."""
    want = fold(heading)
    return next(i for i in range(start, len(found)) if fold(found[i].text) == want)


@dataclass(frozen=True)
class Measure:
    section: float  # columns of the section's text (its heading to the next heading), the table left out
    table: float  # columns of the table float (head row to the caption's end); 0 without a table
    references: float  # columns of the reference list
    pages: int

    def __str__(self) -> str:
        return (
            f"section {self.section:.2f} + table {self.table:.2f} = {self.section + self.table:.2f} columns, "
            f"references {self.references:.2f} columns, {self.pages} pages"
        )


def measure(
    pdf: Path, *, after: str = "Related Work", until: str = "References", table_head: str = "Method"
) -> Measure:
    """The columns the section, its table and the references take in a compiled paper.

    The section runs from its heading to the line before the heading `until`; the table float is
    the lines from its head row (starting with `table_head`) to the end of its caption, and is left
    out of the section wherever it floats to.
    """
    found = lines(pdf)
    table = table_lines(found, table_head)
    in_table = {id(ln) for ln in table}
    rest = [ln for ln in found if id(ln) not in in_table]  # a heading is never a cell of the table
    start = found.index(rest[index(rest, after)])
    stop = found.index(rest[index(rest, until, rest.index(found[start]))])
    section = [ln for ln in found[start:stop] if id(ln) not in in_table]
    references = [ln for ln in found[stop:] if id(ln) not in in_table]
    return Measure(columns(section), columns(table), columns(references), max(ln.page for ln in found))


def table_lines(found: list[Line], table_head: str) -> list[Line]:
    """The lines of the table float: from its head row's cell `table_head` down to its caption's last line.

    pdftotext reads each cell as a line of its own; the caption ends where the vertical gap to the
    next line exceeds the caption's own line spacing (the float's separation from the text).
    """
    cap = next((ln for ln in found if ln.text.startswith("Table 1:")), None)
    if cap is None:
        return []
    same = sorted((ln for ln in found if (ln.page, ln.column) == (cap.page, cap.column)), key=lambda ln: ln.top)
    heads = [ln for ln in same if ln.text == table_head and ln.top < cap.top]
    if not heads:
        return []
    top = max(heads, key=lambda ln: ln.top).top
    bottom = cap.bottom
    for ln in same:
        if ln.top > cap.top and ln.top - bottom < 4:
            bottom = max(bottom, ln.bottom)
        elif ln.top > bottom:
            break
    return [ln for ln in same if top <= ln.top and ln.bottom <= bottom + 0.5]
