"""The bibliography: parse bib/references.bib with bibtexparser v2, check it, and format it.

The bib is the only home of bibliographic facts. It is kept ASCII, with LaTeX escapes for
accented letters, so that every BibTeX style and pdflatex read it; the site decodes it to
Unicode with pylatexenc.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import unicodedata
from dataclasses import dataclass, field

import bibtexparser
import bibtexparser.middlewares as mw
from bibtexparser.model import DuplicateBlockKeyBlock, Entry
from pylatexenc.latex2text import LatexNodes2Text
from pylatexenc.latexencode import UnicodeToLatexEncoder

from atlas.problems import Code, Problem

logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)
logging.getLogger("pylatexenc").setLevel(logging.ERROR)  # a character with no escape is reported by the check

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "article": ("author", "title", "journal", "year"),
    "inproceedings": ("author", "title", "booktitle", "year"),
    "incollection": ("author", "title", "booktitle", "publisher", "year"),
    "book": ("title", "publisher", "year"),
    "misc": ("author", "title", "year"),
    "techreport": ("author", "title", "institution", "year"),
    "phdthesis": ("author", "title", "school", "year"),
    "unpublished": ("author", "title", "note"),
}

# The normal form's field order; fields not listed follow in alphabetical order.
FIELD_ORDER = (
    "title",
    "author",
    "editor",
    "booktitle",
    "journal",
    "series",
    "volume",
    "number",
    "pages",
    "publisher",
    "institution",
    "school",
    "year",
    "month",
    "doi",
    "eprint",
    "archivePrefix",
    "primaryClass",
    "url",
    "code",
    "note",
)

# Fields the survey keeps for the site but that a paper's reference list has no use for.
SITE_ONLY_FIELDS = ("code",)

# BibTeX's month macros: written bare (month = jun) so that every style prints the month's name.
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

ARXIV_NEW = re.compile(r"^\d{4}\.\d{4,5}(v\d+)?$")
ARXIV_OLD = re.compile(r"^[a-z-]+(\.[A-Z]{2})?/\d{7}(v\d+)?$")
FIRST_YEAR = 1900

_encoder = UnicodeToLatexEncoder(
    non_ascii_only=True, replacement_latex_protection="braces-all", unknown_char_policy="keep"
)
_decoder = LatexNodes2Text(math_mode="verbatim")


@dataclass
class BibEntry:
    key: str
    entry_type: str
    fields: dict[str, str]  # raw LaTeX values, enclosing braces removed
    line: int  # 1-based line of the @type{key, line
    field_lines: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        for k, v in self.fields.items():
            if k.lower() == name.lower():
                return v
        return None

    def text(self, name: str) -> str:
        """A field decoded to plain Unicode (LaTeX escapes and protecting braces removed)."""
        value = self.get(name)
        return latex_to_text(value) if value else ""

    @property
    def title(self) -> str:
        return self.text("title")

    @property
    def authors(self) -> list[str]:
        """Authors as 'First Last', decoded."""
        raw = self.get("author") or ""
        out = []
        for name in re.split(r"\s+and\s+", raw.strip()):
            name = latex_to_text(name)
            if "," in name:
                last, first = [p.strip() for p in name.split(",", 1)]
                name = f"{first} {last}".strip()
            out.append(name)
        return [a for a in out if a]

    @property
    def last_names(self) -> list[str]:
        raw = self.get("author") or ""
        out = []
        for name in re.split(r"\s+and\s+", raw.strip()):
            name = latex_to_text(name).strip()
            out.append(name.split(",")[0].strip() if "," in name else name.split()[-1])
        return out

    @property
    def author_short(self) -> str:
        """'van den Oord et al.', 'Ho and Salimans', 'Zeghidour'."""
        names = self.last_names
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]} and {names[1]}"
        return f"{names[0]} et al."

    @property
    def year(self) -> str:
        return self.get("year") or ""

    @property
    def venue(self) -> str:
        return self.text("booktitle") or self.text("journal") or ("arXiv preprint" if self.arxiv else "")

    @property
    def arxiv(self) -> str | None:
        eprint = self.get("eprint")
        prefix = (self.get("archivePrefix") or "arXiv").lower()
        return eprint if eprint and prefix == "arxiv" else None

    @property
    def code(self) -> str | None:
        return self.get("code")

    def bibtex(self, drop: tuple[str, ...] = ()) -> str:
        """This entry alone, in the normal form of `format_bib`."""
        fields = {k: v for k, v in self.fields.items() if k not in drop}
        return format_entries([(self.entry_type, self.key, fields)])


def encode_latex(value: str) -> str:
    """Non-ASCII letters as LaTeX escapes in braces (e -> {\\'e}); LaTeX already present is kept."""
    return _encoder.unicode_to_latex(value)


def protect_title(title: str) -> str:
    """Brace words whose case BibTeX must keep (acronyms, CamelCase, digit-letter mixes) at depth 0."""
    out, depth, word = [], 0, ""

    def flush() -> None:
        nonlocal word
        if word:
            parts = re.split(r"[-/]", word)
            special = any(
                re.search(r"[A-Z]", p[1:]) or (re.search(r"\d", p) and re.search(r"[A-Za-z]", p)) for p in parts
            )
            out.append("{" + word + "}" if special and "\\" not in word else word)
            word = ""

    for ch in title:
        if ch == "{":
            flush()
            depth += 1
            out.append(ch)
        elif ch == "}":
            depth -= 1
            out.append(ch)
        elif depth == 0 and re.match(r"[\w\-/]", ch):
            word += ch
        else:
            flush()
            out.append(ch)
    flush()
    return "".join(out)


def latex_to_text(value: str) -> str:
    return re.sub(r"\s+", " ", _decoder.latex_to_text(value)).strip()


def fold_title(title: str) -> str:
    """Case, accents, braces and punctuation folded away, for duplicate detection."""
    text = unicodedata.normalize("NFKD", latex_to_text(title)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _field_lines(entry: Entry, start: int) -> dict[str, int]:
    lines = {}
    for i, text in enumerate(entry.raw.splitlines()):
        m = re.match(r"\s*,?\s*([A-Za-z][\w-]*)\s*=", text)
        if m and i > 0 or (m and i == 0 and "{" not in text.split("=")[0]):
            lines.setdefault(m.group(1).lower(), start + i)
    return lines


def parse_bib(text: str, path: str) -> tuple[dict[str, BibEntry], list[Problem]]:
    """Parse and check the bib; every entry that parses is returned, with every problem found."""
    problems: list[Problem] = []
    library = bibtexparser.parse_string(text, parse_stack=[mw.RemoveEnclosingMiddleware()])
    entries: dict[str, BibEntry] = {}
    titles: dict[str, BibEntry] = {}
    this_year = _dt.date.today().year
    for e in library.entries:
        start = e.start_line + 1
        fields = {f.key: str(f.value) for f in e.fields}
        entry = BibEntry(e.key, e.entry_type.lower(), fields, start, _field_lines(e, start))
        entries.setdefault(e.key, entry)
        problems += _check_entry(entry, path, this_year)
        title = entry.get("title")
        if title:
            folded = fold_title(title)
            if folded in titles:
                other = titles[folded]
                problems.append(
                    Problem(
                        path,
                        entry.field_lines.get("title", start),
                        f"duplicate title: '{entry.key}' has the title of '{other.key}' (line {other.line})",
                        "one entry per paper",
                        Code.BIB_DUPLICATE,
                    )
                )
            else:
                titles[folded] = entry
    for block in library.failed_blocks:
        line = block.start_line + 1
        if isinstance(block, DuplicateBlockKeyBlock):
            first = entries.get(block.key)
            where = f" (first at line {first.line})" if first else ""
            problems.append(
                Problem(path, line, f"duplicate key '{block.key}'{where}", "each key once", Code.BIB_DUPLICATE)
            )
        else:
            problems.append(failed_block_problem(block, text, path))
    for i, line_text in enumerate(text.splitlines(), start=1):
        for ch in sorted(set(c for c in line_text if ord(c) > 127), key=line_text.index):
            escape = _encoder.unicode_to_latex(ch)
            hint = f"the LaTeX escape {escape}" if escape != ch else "a LaTeX escape"
            problems.append(
                Problem(path, i, f"non-ASCII character '{ch}' (U+{ord(ch):04X})", f"write {hint}", Code.BIB_ENCODING)
            )
    return entries, problems


def failed_block_problem(block, text: str, path: str) -> Problem:
    """One `path:line` problem for a block bibtexparser could not parse, at the line of the entry's start."""
    error = getattr(block, "error", None)
    reason = str(getattr(error, "abort_reason", "") or "").strip()
    end = getattr(error, "end_index", None)
    start = block.start_line + 1
    stop = text.count("\n", 0, end) + 1 if isinstance(end, int) else start
    key = re.match(r"@\s*\w+\s*[{(]\s*([^,\s{}()]+)", block.raw or "")
    name = f"entry '{key.group(1)}'" if key else "entry"
    if reason.startswith("Expected comma after entry key"):
        what = f"{name} has no comma after its key"
    elif reason.startswith("Unexpected block start"):
        what = f"{name} has a '{{' still open when the next entry starts (line {stop})"
    elif reason:
        what = f"{name} does not parse: {reason[0].lower() + reason[1:]}".rstrip(".")
        what += f" (line {stop})" if stop != start else ""
    else:
        what = f"{name} does not parse"
    return Problem(
        path, start, what, "@type{key, field = {value}, ...}: a comma after the key, every { closed", Code.BIB_PARSE
    )


def _check_entry(e: BibEntry, path: str, this_year: int) -> list[Problem]:
    out = []

    def line(name: str) -> int:
        return e.field_lines.get(name.lower(), e.line)

    required = REQUIRED_FIELDS.get(e.entry_type)
    if required is None:
        out.append(
            Problem(
                path,
                e.line,
                f"entry '{e.key}' has unknown type '@{e.entry_type}'",
                "one of: " + ", ".join("@" + t for t in REQUIRED_FIELDS),
                Code.BIB_FIELD,
            )
        )
    else:
        for name in required:
            if not (e.get(name) or "").strip():
                out.append(
                    Problem(
                        path,
                        e.line,
                        f"entry '{e.key}' (@{e.entry_type}) lacks the required field '{name}'",
                        "required: " + ", ".join(required),
                        Code.BIB_FIELD,
                    )
                )
    year = e.get("year")
    if year is not None and (not re.fullmatch(r"\d{4}", year.strip()) or not FIRST_YEAR <= int(year) <= this_year + 1):
        out.append(
            Problem(
                path,
                line("year"),
                f"entry '{e.key}' has year '{year}'",
                f"a four-digit year from {FIRST_YEAR} to {this_year + 1}",
                Code.BIB_FIELD,
            )
        )
    eprint = (e.get("eprint") or "").strip()
    is_arxiv = e.get("eprint") is not None and (e.get("archivePrefix") or "arXiv").lower() == "arxiv"
    if is_arxiv and not (ARXIV_NEW.match(eprint) or ARXIV_OLD.match(eprint)):
        out.append(
            Problem(
                path,
                line("eprint"),
                f"entry '{e.key}' has arXiv id '{e.get('eprint')}'",
                "an id like 2112.10752 (YYMM.NNNNN, optional vN) or hep-th/9901001",
                Code.BIB_FIELD,
            )
        )
    return out


def format_entries(entries: list[tuple[str, str, dict[str, str]]]) -> str:
    """The normal form: fields in FIELD_ORDER, two-space indent, aligned '=', values in braces."""
    order = {name.lower(): i for i, name in enumerate(FIELD_ORDER)}
    blocks = []
    for entry_type, key, fields in entries:
        names = sorted(fields, key=lambda n: (order.get(n.lower(), len(order)), n.lower()))
        width = max((len(n) for n in names), default=0)
        body = ",\n".join(f"  {n.ljust(width)} = {_value(n, fields[n])}" for n in names)
        blocks.append(f"@{entry_type}{{{key},\n{body}\n}}\n")
    return "\n".join(blocks)


def _value(name: str, value: str) -> str:
    value = value.strip()
    if name.lower() == "month" and value.lower() in MONTHS:
        return value.lower()  # the macro, bare
    return "{" + value + "}"


def format_bib(text: str, convert: bool = False) -> str:
    """Rewrite a parsable bib in the normal form; entries keep their order. Idempotent.

    @string abbreviations are written out in the entries that use them (their meaning kept, their
    definitions dropped), @preamble blocks are kept first, comments are dropped. convert=True turns
    non-ASCII letters into the LaTeX escapes the check asks for; a month becomes its bare macro.
    """
    from atlas.importer import month_macro

    stack = [mw.ResolveStringReferencesMiddleware(), mw.RemoveEnclosingMiddleware()]
    library = bibtexparser.parse_string(text, parse_stack=stack)
    if library.failed_blocks:
        raise ValueError("the bib does not parse")
    items = []
    for e in library.entries:
        fields = {f.key: re.sub(r"\s+", " ", str(f.value)).strip() for f in e.fields}
        if convert:  # what the check asks for: LaTeX escapes for non-ASCII letters, months as macros
            fields = {k: encode_latex(v) for k, v in fields.items()}
            fields = {k: (month_macro(v) or v) if k.lower() == "month" else v for k, v in fields.items()}
        items.append((e.entry_type.lower(), e.key, fields))
    preambles = "".join(f"@preamble{{{p.value}}}\n\n" for p in library.preambles)
    return preambles + format_entries(items)
