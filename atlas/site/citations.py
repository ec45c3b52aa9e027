"""Citations of note bodies as links: `[@key]` -> (Author et al., Year), `@key` -> Author et al. (Year),
each a link to the cited paper's page with its title on hover. The grammar is atlas.markdown's;
the loader has already rejected unknown keys, so every key here is in the bib."""

from __future__ import annotations

from atlas import markdown as md
from atlas.model import Survey
from atlas.site.common import attr, authors_of, link, paper_page, title_of


def _cite_link(survey: Survey, page: str, key: str, text: str) -> str:
    return f'[{text}]({link(page, paper_page(key))} "{attr(title_of(survey.entries[key]))}")'


def render_citations(text: str, survey: Survey, page: str) -> str:
    """`text` with every citation replaced by links relative to `page`; code and math are left alone."""
    prose = md.scan(text).prose
    groups = md.parse_citations(text, prose)
    edits: list[tuple[int, int, str]] = []
    for g in groups:
        if g.bracketed:
            pieces = []
            for c in g.cites:
                entry = survey.entries[c.key]
                label = entry.year if c.suppress_author else f"{authors_of(entry)}, {entry.year}"
                piece = _cite_link(survey, page, c.key, label)
                if c.prefix:
                    piece = f"{c.prefix} {piece}"
                if c.locator:
                    piece += c.locator if c.locator.startswith(",") else f", {c.locator}"
                pieces.append(piece)
            edits.append((g.start, g.end, "(" + "; ".join(pieces) + ")"))
        else:
            (c,) = g.cites
            entry = survey.entries[c.key]
            edits.append((g.start, g.end, _cite_link(survey, page, c.key, f"{authors_of(entry)} ({entry.year})")))
    edits += [(start, end, "&#64;") for start, end in md.literal_ats(prose, groups)]
    out = text
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    return out
