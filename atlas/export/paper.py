"""`atlas export --into PATH/paper.tex`: the section written into the user's own single-file paper.

AAAI wants the paper's source as one .tex file ("use of the input command is not allowed"), so
the section and its table go *between two marker comments* of the paper itself:

    % atlas:begin related-work
    % atlas:end related-work

and the entries it cites go into the paper's .bib (the first file of its `\\bibliography{...}`
that exists, else the first one named), inside a block of their own:

    % atlas:begin references
    % atlas:end references

With `--style catalogue`, the per-paper appendix goes between markers of its own,
`% atlas:begin appendix-papers` and `% atlas:end appendix-papers` (for example after the
references, where AAAI's supplementary material or an appendix starts).

The block of the .bib holds every survey entry that the paper cites anywhere (so a citation of a
survey paper elsewhere in the paper keeps its entry) and that the author's own entries, outside the
block, do not already hold; the author's entries are never touched. The author's .bib is read
first (a block that does not parse is reported with its line, and nothing is written). A survey
paper that it holds under another key (the same arXiv id, DOI, or normalised title and year, as
Google Scholar's `van2017neural` for `oord2017neural`) is cited with the author's key and not
added again; an author's entry under one of the survey's keys but for another paper is kept and
the section cites it as it is. Each of these decisions is reported in one line. Each begin line records the SHA-256
of what atlas wrote between the markers: a second run writes the same bytes, and a hand edit
between the markers is refused unless forced. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import bibtexparser

from atlas.bib import failed_block_problem, fold_title
from atlas.problems import Problem
from atlas.text import stage

MARK = re.compile(r"^% atlas:(begin|end) ([a-z-]+)(?: sha256=([0-9a-f]{64}))?[ \t]*$", re.M)
SECTION, REFERENCES, APPENDIX = "related-work", "references", "appendix-papers"


@dataclass
class Block:
    begin: int  # offset of the begin line
    body_start: int  # offset after the begin line's newline
    body_end: int  # offset of the end line
    end: int  # offset after the end line (and its newline)
    recorded: str | None  # the sha256 on the begin line
    line: int  # 1-based line of the begin marker

    def body(self, text: str) -> str:
        return text[self.body_start : self.body_end]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def find_block(text: str, name: str, shown: str) -> tuple[Block | None, list[Problem]]:
    marks = [m for m in MARK.finditer(text) if m.group(2) == name]
    if not marks:
        return None, []
    kinds = [m.group(1) for m in marks]
    line = text.count("\n", 0, marks[0].start()) + 1
    if kinds != ["begin", "end"]:
        return None, [
            Problem(
                shown,
                line,
                f"the '{name}' markers are {len(kinds)} lines ({', '.join(kinds)})",
                f"exactly one '% atlas:begin {name}' line followed by one '% atlas:end {name}' line",
            )
        ]
    b, e = marks
    body_start = b.end() + 1 if text[b.end() : b.end() + 1] == "\n" else b.end()
    end = e.end() + 1 if text[e.end() : e.end() + 1] == "\n" else e.end()
    return Block(b.start(), body_start, e.start(), end, b.group(3), line), []


def _replace(
    text: str, block: Block, name: str, body: str, *, force: bool, shown: str
) -> tuple[str | None, list[Problem]]:
    old = block.body(text)
    if not force:
        if block.recorded is None and old.strip():
            return None, [
                Problem(
                    shown,
                    block.line,
                    f"text between the '{name}' markers was not written by atlas export",
                    "empty markers (move the text elsewhere), or pass --force to replace it",
                )
            ]
        if block.recorded is not None and _sha(old) != block.recorded:
            return None, [
                Problem(
                    shown,
                    block.line,
                    f"the text between the '{name}' markers was edited by hand since the last export",
                    (
                        "move the edit into related/*.md (or the notes), or pass --force to overwrite it"
                        if name == SECTION
                        else "fix the entry in the survey's bib/references.bib, or add your own version outside "
                        "the atlas block of this .bib (yours is then kept and cited), or pass --force"
                    ),
                )
            ]
    begin = f"% atlas:begin {name} sha256={_sha(body)}\n"
    return text[: block.begin] + begin + body + text[block.body_end :], []


def bibliography_file(paper: Path, text: str) -> Path | None:
    """The .bib the paper's \\bibliography names: the first that exists, else the first named."""
    code = re.sub(r"(?<!\\)%.*", "", text)
    m = re.search(r"\\bibliography\{([^}]*)\}", code)
    if not m:
        return None
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    paths = [paper.parent / (n if n.endswith(".bib") else n + ".bib") for n in names]
    return next((p for p in paths if p.is_file()), paths[0] if paths else None)


ARXIV = re.compile(r"(?<![\d.])(\d{4}\.\d{4,5})(?:v\d+)?(?![\d])")


@dataclass(frozen=True)
class Identity:
    """What says two entries are the same paper, whatever their keys: arXiv id, DOI, title and year."""

    arxiv: str | None
    doi: str | None
    title_year: tuple[str, str] | None

    @classmethod
    def of(cls, fields: dict[str, str]) -> Identity:
        low = {k.lower(): v for k, v in fields.items()}
        found = (ARXIV.search(low.get(name, "")) for name in ("eprint", "arxiv", "url", "journal", "note"))
        arxiv = next((m.group(1) for m in found if m), None)
        doi = low.get("doi", "").strip().lower().removeprefix("https://doi.org/") or None
        title = fold_title(low["title"]) if low.get("title") else ""
        year = re.sub(r"\D", "", low.get("year", ""))
        return cls(arxiv, doi, (title, year) if title and year else None)

    def same_paper(self, other: Identity) -> str | None:
        """Why the two are one paper ('arXiv id 2012.09841', ...), or None."""
        if self.arxiv and self.arxiv == other.arxiv:
            return f"arXiv id {self.arxiv}"
        if self.doi and self.doi == other.doi:
            return f"DOI {self.doi}"
        if self.title_year and other.title_year and self.title_year[0] == other.title_year[0]:
            years = {self.title_year[1], other.title_year[1]}
            if len(years) == 1 or max(map(int, years)) - min(map(int, years)) == 1:  # arXiv year and venue year
                return "title and year"
        return None


def author_entries(bib: str, shown: str) -> tuple[dict[str, Identity], list[Problem]]:
    """The author's own entries (outside the atlas block) by key, or a problem per block that does not parse."""
    library = bibtexparser.parse_string(bib)
    problems = [failed_block_problem(b, bib, shown) for b in library.failed_blocks]
    return {e.key: Identity.of({f.key: str(f.value) for f in e.fields}) for e in library.entries}, problems


def reconcile(
    cited: set[str], survey: dict[str, Identity], author: dict[str, Identity], bib_shown: str
) -> tuple[dict[str, str], list[str]]:
    """Survey keys to cite under the author's key instead, and one line per decision.

    A cited survey paper that the author's .bib holds under another key is cited with the author's
    key; under the same key, the author's entry is kept, and when it is another paper the survey's
    entry is added as `<key>-atlas`, which the section cites.
    """
    renamed: dict[str, str] = {}
    said: list[str] = []
    for key in sorted(cited & set(survey)):
        ours = survey[key]
        if key in author:
            if not ours.same_paper(author[key]):
                renamed[key] = f"{key}-atlas"
                said.append(
                    f"{bib_shown}: your entry '{key}' is another paper than the survey's '{key}'; yours is kept, "
                    f"the survey's is added as '{key}-atlas' and the section cites that"
                )
            continue
        match = next(((k, why) for k, ident in sorted(author.items()) if (why := ours.same_paper(ident))), None)
        if match:
            renamed[key] = match[0]
            said.append(
                f"{bib_shown}: the survey's '{key}' is your '{match[0]}' (same {match[1]}); cited as yours, not added"
            )
    return renamed, said


CITE = re.compile(r"(\\(?:no)?cite[a-zA-Z]*\*?(?:\[[^\]]*\])*\{)([^}]*)(\})")


def rename_citations(tex: str, renamed: dict[str, str]) -> str:
    """The citation keys of tex mapped through renamed (a key cited twice in one command appears once)."""

    def one(m: re.Match) -> str:
        keys = list(dict.fromkeys(renamed.get(k.strip(), k.strip()) for k in m.group(2).split(",") if k.strip()))
        return m.group(1) + ", ".join(keys) + m.group(3)

    return CITE.sub(one, tex) if renamed else tex


@dataclass
class Merged:
    """The new texts of the paper and its .bib, what was decided about the author's entries, or the problems."""

    texts: dict[Path, str]
    said: list[str]
    problems: list[Problem]


def merge(
    paper: Path,
    shown: str,
    block_tex: str,
    survey: dict[str, dict[str, str]],
    entries,
    *,
    force: bool,
    appendix_tex: str = "",
) -> Merged:
    """The new texts of the paper and its .bib, or the problems (nothing is written here).

    `survey` maps each survey key to its bib fields; `entries(keys)` formats the survey's entries of
    `keys` (sorted) in the bib's normal form.
    """
    try:
        text = paper.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Merged(
            {},
            [],
            [
                Problem(
                    shown,
                    1,
                    f"cannot read the paper at {paper} ({getattr(exc, 'strerror', None) or exc})",
                    "the path of the paper's main .tex file, relative to the current folder (or absolute)",
                )
            ],
        )
    block, problems = find_block(text, SECTION, shown)
    if problems:
        return Merged({}, [], problems)
    if block is None:
        return Merged(
            {},
            [],
            [
                Problem(
                    shown,
                    1,
                    "the paper has no markers for the related-work section",
                    "two lines '% atlas:begin related-work' and '% atlas:end related-work' where the section goes "
                    "(for example after the introduction), then run the export again",
                )
            ],
        )
    bib_path = bibliography_file(paper, text)
    if bib_path is None:
        return Merged(
            {},
            [],
            [
                Problem(
                    shown,
                    1,
                    "the paper has no \\bibliography{...}",
                    "\\bibliography{references} where the reference list goes",
                )
            ],
        )
    bib_shown = (Path(shown).parent / bib_path.name).as_posix()
    bib = bib_path.read_text(encoding="utf-8") if bib_path.is_file() else ""
    bib_block, problems = find_block(bib, REFERENCES, bib_shown)
    if problems:
        return Merged({}, [], problems)
    author, problems = author_entries(bib if bib_block is None else _blank(bib, bib_block), bib_shown)
    if problems:
        return Merged({}, [], problems)
    identities = {k: Identity.of(f) for k, f in survey.items()}
    renamed, said = reconcile(_cited(text) | _cited(block_tex), identities, author, bib_shown)
    new_text, problems = _replace(text, block, SECTION, rename_citations(block_tex, renamed), force=force, shown=shown)
    if problems:
        return Merged({}, [], problems)
    new_text, problems = _appendix(new_text, rename_citations(appendix_tex, renamed), force=force, shown=shown)
    if problems:
        return Merged({}, [], problems)
    cited = _cited(new_text)
    apart = {k: v for k, v in renamed.items() if k in author and v in cited}  # the survey's copy of a taken key
    keys = sorted(((cited & set(survey)) - set(author)) | set(apart))
    body = entries(keys)
    for key, new_key in apart.items():
        body = re.sub(r"(@\w+\{)" + re.escape(key) + ",", rf"\g<1>{new_key},", body, count=1)
    if bib_block is None:
        sep = "" if not bib or bib.endswith("\n\n") else ("\n" if bib.endswith("\n") else "\n\n")
        new_bib = bib + sep + f"% atlas:begin {REFERENCES} sha256={_sha(body)}\n" + body + f"% atlas:end {REFERENCES}\n"
    else:
        new_bib, problems = _replace(bib, bib_block, REFERENCES, body, force=force, shown=bib_shown)
        if problems:
            return Merged({}, [], problems)
    return Merged({paper: new_text, bib_path: new_bib}, said, [])


def _appendix(text: str, appendix_tex: str, *, force: bool, shown: str) -> tuple[str, list[Problem]]:
    """The catalogue appendix between its own markers, when the paper has them."""
    block, problems = find_block(text, APPENDIX, shown)
    if problems or block is None:
        return text, problems
    if not appendix_tex:
        return text, [
            Problem(
                shown,
                block.line,
                f"the paper has '{APPENDIX}' markers but the export has no catalogue",
                "--style catalogue (or style: catalogue in atlas.yml), or remove the markers",
            )
        ]
    new_text, problems = _replace(text, block, APPENDIX, appendix_tex, force=force, shown=shown)
    return (new_text or text), problems


def _blank(text: str, block: Block) -> str:
    """text with the block's lines emptied, so that line numbers of what is left stay those of the file."""
    inner = text[block.begin : block.end]
    return text[: block.begin] + re.sub(r"[^\n]", "", inner) + text[block.end :]


def _cited(tex: str) -> set[str]:
    code = re.sub(r"(?<!\\)%.*", "", tex)
    return {k.strip() for m in CITE.finditer(code) for k in m.group(2).split(",") if k.strip()}


def write_all(texts: dict[Path, str]) -> list[Path]:
    """Write each file beside itself and move it into place (unchanged files are left alone); the changed ones."""
    staged = []
    for path, text in texts.items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        staged.append((stage(path, text), path))
    for tmp, path in staged:
        os.replace(tmp, path)
    return [path for _, path in staged]
