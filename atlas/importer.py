"""Importing references: BibTeX from a file, standard input, or a Zotero (Better BibTeX) export.

`normalise` turns whatever a reference manager or a paper page gives into the bib's normal form:
Unicode letters become LaTeX escapes (pylatexenc), a month becomes its BibTeX macro (`jun`, which
styles print as "June"), words whose case BibTeX must keep are braced in titles, biblatex names
(`date`, `journaltitle`, `eprinttype`) become BibTeX ones, and fields the survey does not keep
(abstract, keywords, urldate, file, ...) are dropped and listed. An entry whose key or title is
already in the bib is refused, naming the entry it duplicates. `scaffold_note` writes the note a
new paper starts from: its front matter keys with their allowed values, and the five sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import bibtexparser
import bibtexparser.middlewares as mw

from atlas.bib import FIELD_ORDER, MONTHS, BibEntry, encode_latex, fold_title, protect_title
from atlas.model import SECTIONS, AtlasConfig
from atlas.problems import Problem

KEPT = {name.lower(): name for name in FIELD_ORDER}
RENAMED = {"journaltitle": "journal", "eprinttype": "archiveprefix", "eprintclass": "primaryclass"}
TYPES = {
    "online": "misc",
    "electronic": "misc",
    "report": "techreport",
    "thesis": "phdthesis",
    "conference": "inproceedings",
}
_FULL_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# every spelling a month takes in exported BibTeX -> its macro: 'jun', 'june', '6', '06'
MONTH_WORDS = {
    word: macro
    for i, (macro, full) in enumerate(zip(MONTHS, _FULL_MONTHS, strict=True), start=1)
    for word in (macro, full, str(i), f"{i:02d}")
}
ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?")


@dataclass
class Imported:
    """The entries that can be added, in normal form, and what was dropped or refused."""

    entries: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (type, key, fields)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # key -> field names left out
    lines: dict[str, int] = field(default_factory=dict)  # key -> 1-based line of the entry in its source
    problems: list[Problem] = field(default_factory=list)


def month_macro(value: str) -> str | None:
    """'June', 'jun', '6', '06' -> 'jun'; None when it is not a month."""
    return MONTH_WORDS.get(value.strip().strip("{}").strip().lower().rstrip("."))


def _normal_fields(raw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    fields: dict[str, str] = {}
    dropped: list[str] = []
    lowered = {RENAMED.get(k.lower(), k.lower()): (k, re.sub(r"\s+", " ", v).strip()) for k, v in raw.items()}
    date = lowered.pop("date", None)
    if date and "year" not in lowered:
        m = re.match(r"(\d{4})(?:-(\d{2}))?", date[1])
        if m:
            lowered["year"] = ("year", m.group(1))
            if m.group(2) and "month" not in lowered:
                lowered["month"] = ("month", m.group(2))
    elif date:
        dropped.append(date[0])
    for low, (original, value) in lowered.items():
        if low not in KEPT:
            dropped.append(original)
            continue
        name = KEPT[low]
        if low == "month":
            macro = month_macro(value)
            if macro is None:
                dropped.append(original)
                continue
            value = macro
        elif low == "archiveprefix" and value.lower() == "arxiv":
            value = "arXiv"
        else:
            value = encode_latex(value)
            if low == "title":
                value = protect_title(value)
        fields[name] = value
    url = fields.get("url", "")
    m = ARXIV_URL.search(url)
    if m and "eprint" not in fields:
        fields["eprint"], fields["archivePrefix"] = m.group(1), "arXiv"
    return fields, sorted(dropped, key=str.lower)


def normalise(text: str, source: str, existing: dict[str, BibEntry]) -> Imported:
    """Every entry of `text` in normal form, or a problem naming `source`'s line and what to do."""
    out = Imported()
    library = bibtexparser.parse_string(text, parse_stack=[mw.RemoveEnclosingMiddleware()])
    for block in library.failed_blocks:
        out.problems.append(
            Problem(
                source,
                block.start_line + 1,
                "entry does not parse",
                "@type{key, field = {value}, ...} with balanced braces",
            )
        )
    titles = {fold_title(e.get("title") or ""): e for e in existing.values() if e.get("title")}
    seen: dict[str, int] = {}
    for e in library.entries:
        line = e.start_line + 1
        key = e.key
        fields, dropped = _normal_fields({f.key: str(f.value) for f in e.fields})
        if key in existing:
            out.problems.append(
                Problem(
                    source,
                    line,
                    f"entry '{key}' is already in the bib (line {existing[key].line})",
                    "a new paper; to change an existing entry, edit bib/references.bib",
                )
            )
            continue
        folded = fold_title(fields.get("title", ""))
        if folded and folded in titles:
            other = titles[folded]
            out.problems.append(
                Problem(
                    source,
                    line,
                    f"entry '{key}' has the title of '{other.key}' (line {other.line})",
                    "one entry per paper; keep the existing key",
                )
            )
            continue
        if key in seen:
            out.problems.append(
                Problem(source, line, f"entry '{key}' appears twice (first at line {seen[key]})", "each key once")
            )
            continue
        seen[key] = line
        if folded:
            titles[folded] = BibEntry(key, "", fields, line)
        entry_type = TYPES.get(e.entry_type.lower(), e.entry_type.lower())
        out.entries.append((entry_type, key, fields))
        out.lines[key] = line
        if dropped:
            out.dropped[key] = dropped
    return out


def scaffold_note(key: str, config: AtlasConfig) -> str:
    """The note a new paper starts from: front matter keys with their allowed values, empty sections."""
    voc = config.vocabularies
    groups = ", ".join(g.id for g in config.groups)

    def allowed(facet: str) -> str:
        return ", ".join(voc[facet])

    front = [
        "---",
        f"key: {key}",
        "short:              # the name the field uses for the method",
        f"group:              # one of: {groups}",
        f"modality: []        # any of: {allowed('modality')}",
        f"latent:             # one of: {allowed('latent')}",
        f"prior:              # one of: {allowed('prior')}",
        f"conditioning: []    # any of: {allowed('conditioning')}",
        "builds_on: []       # keys of earlier papers of the survey",
        "implementation: []  # e.g. [reference_impls.<mechanism>]",
        "tests: []           # e.g. [tests/reference_impls/test_<mechanism>.py]",
        "numbers: []         # - {what: codebook size, value: 1024, source: 'Sec. 4.1'}",
        "---",
        "",
    ]
    body = "\n".join(f"## {s}\n" for s in SECTIONS)
    return "\n".join(front) + "\n" + body
