"""The related-work texts: a synthesis by theme, cut to a length by sentence priority.

`related/intro.md`, `related/<group id>.md` (one per group of atlas.yml) and
`related/conclusion.md` hold the related-work section in our own words. Each text is a run of
*units*, each opened by a tag naming the shortest length that keeps it:

    {short} Discrete tokenizers turn a signal into a grid of indices [@oord2017neural; @esser2021taming].
    {column} A sentence the column-long section adds ...
    {full} A sentence only the full section has ...

A unit is one sentence (or a few that belong together) and may wrap over several lines; a blank
line starts a new paragraph. `--length short` keeps the short units, `column` the short and
column ones, `full` all of them; a word budget then drops the lowest-priority units first (level,
then the later unit of the text). Because any unit may be cut, a unit never opens with a pronoun
or "The paper" whose subject is elsewhere, and a unit opening with a connective ("However") never
follows a unit that a shorter length drops. The check (`check_related`) holds the texts to the
survey: citations resolve, each group's text cites every paper of the group that is not excluded,
the short units cite only core papers, every length's word count lies in atlas.yml's range, and
what is said about our work stays within the our-work profile.

This module reads no file: the loader passes each file's text to `parse_related`. It imports the
model only for type checking, so atlas.model can import `ExportSettings` from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from atlas import markdown as md
from atlas.claims import claims
from atlas.problems import Code, Problem

if TYPE_CHECKING:
    from atlas.model import Survey

RELATED = "related"
LEVELS = ("short", "column", "full")
INTRO, CONCLUSION = "intro", "conclusion"
TABLE_STYLES = ("compact", "full", "none")
STYLES = ("synthesis", "catalogue")
MAX_COMPACT_ROWS = 11  # plus the row of our work: at most 12

# A unit may not open with these: its subject would be in a sentence a shorter length drops.
PRONOUN_OPENING = re.compile(
    r"^(?:it|its|they|their|them|this|these|that|those|he|she|his|her|such|there|here|both of them|"
    r"the (?:paper|papers|work|method|methods|model|models|authors|approach|latter|former|same))\b",
    re.I,
)
# ... and a unit opening with one of these leans on the unit before it.
CONNECTIVE_OPENING = re.compile(
    r"^(?:however|instead|similarly|likewise|in contrast|by contrast|conversely|moreover|furthermore|"
    r"also|yet|still|thus|hence|therefore|consequently|in turn|in particular|otherwise|nevertheless)\b",
    re.I,
)
TAG = re.compile(r"^\{([a-z]+)(?:\s+([+-])contribution)?\}(?:\s+|$)")
# {short +contribution}: kept only when atlas.yml's our_work.contribution is set; {short -contribution}: only when not.
CONTRIBUTION = "{{contribution}}"  # replaced by our_work.contribution in a +contribution unit
SURVEY_VOICE = re.compile(
    r"\b(?:the papers|the literature|read together|this survey|the survey|the works? (?:above|below)"
    r"|(?:are|is) grouped (?:below|by)|surveyed here)\b",
    re.I,
)
NOVELTY = re.compile(
    r"\b(?:novel\w*|for the first time|(?:we|ours?|our work) (?:is|are) the first|first to|"
    r"unlike (?:all )?(?:prior|previous|existing) (?:work|methods))\b",
    re.I,
)
COMMENT = re.compile(r"<!--.*?-->", re.S)


# ---------------------------------------------------------------------------------------------
# settings: atlas.yml's export section


class TableColumn(BaseModel):
    """One column of the comparison table after the method: a facet of the notes, or their key numbers
    tagged `column: <id>` (the value and its source live in the note; nothing is typed here)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str  # the column head
    means: str  # what a cell says, for the caption
    facet: str | None = None  # latent, prior, modality or conditioning; None = the notes' tagged key numbers

    @field_validator("facet")
    @classmethod
    def _facet(cls, v: str | None) -> str | None:
        return v if v is None else _one_of("facet", v, ("latent", "prior", "modality", "conditioning"))


def default_columns() -> list[TableColumn]:
    """Without atlas.yml's export.table_columns: the kind of latent and the family of prior."""
    return [
        TableColumn(id="latent", title="Latent", means="the kind of latent", facet="latent"),
        TableColumn(id="prior", title="Prior", means="the family of prior", facet="prior"),
    ]


class ExportSettings(BaseModel):
    """atlas.yml `export:`: the export's lasting choices; a command-line flag overrides one for one run."""

    model_config = ConfigDict(extra="forbid")
    length: str = "column"  # short | column | full
    style: str = "synthesis"  # synthesis | catalogue (catalogue adds appendix-papers.tex)
    groups: list[str] = Field(default_factory=list)  # group ids; empty = every group
    papers: list[str] = Field(default_factory=list)  # bib keys; empty = every paper
    facets: list[str] = Field(default_factory=list)  # 'prior=autoregressive', 'modality=audio'
    words: int | None = None  # a cap on the section's words; None = the length alone decides
    paper_words: int = 70  # catalogue: the word budget of each paper's paragraph
    table: str = "compact"  # compact (at most 12 rows, one column) | full (every paper, table*) | none
    table_rows: int = 9  # rows of the compact table, ours included (at most 12)
    # the compact table's papers, first choice first; the rule fills the rest
    table_papers: list[str] = Field(default_factory=list)
    table_columns: list[TableColumn] = Field(default_factory=default_columns)
    into: str | None = None  # the paper's .tex (relative to the root) that `atlas export`/`build` writes into
    lengths: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"short": (200, 350), "column": (450, 700), "full": (700, 2200)}
    )

    @field_validator("length")
    @classmethod
    def _length(cls, v: str) -> str:
        return _one_of("length", v, LEVELS)

    @field_validator("style")
    @classmethod
    def _style(cls, v: str) -> str:
        return _one_of("style", v, STYLES)

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        return _one_of("table", v, TABLE_STYLES)

    @field_validator("words", "paper_words")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise PydanticCustomError(
                "budget", "word budget {v} is below 1; expected a positive number of words", {"v": v}
            )
        return v

    @field_validator("table_rows")
    @classmethod
    def _table_rows(cls, v: int) -> int:
        if not 2 <= v <= MAX_COMPACT_ROWS + 1:
            raise PydanticCustomError(
                "rows",
                "table_rows is {v}; expected 2 to {t} (our work's row included)",
                {"v": v, "t": MAX_COMPACT_ROWS + 1},
            )
        return v

    @field_validator("table_papers")
    @classmethod
    def _rows(cls, v: list[str]) -> list[str]:
        if len(v) > MAX_COMPACT_ROWS:
            raise PydanticCustomError(
                "rows",
                "table_papers lists {n} papers; expected at most {m} (the row of our work makes {t})",
                {"n": len(v), "m": MAX_COMPACT_ROWS, "t": MAX_COMPACT_ROWS + 1},
            )
        return v

    @field_validator("lengths")
    @classmethod
    def _lengths(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for name, (low, high) in v.items():
            _one_of("lengths", name, LEVELS)
            if not 0 < low <= high:
                raise PydanticCustomError(
                    "range",
                    "lengths.{name} is [{low}, {high}]; expected [low, high] words with 0 < low <= high",
                    {"name": name, "low": low, "high": high},
                )
        return {n: v[n] for n in LEVELS if n in v}


def _one_of(what: str, v: str, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise PydanticCustomError(
            "choice",
            "unknown {what} '{v}'; expected one of: {allowed}",
            {"what": what, "v": v, "allowed": ", ".join(allowed)},
        )
    return v


# ---------------------------------------------------------------------------------------------
# the texts


@dataclass(frozen=True)
class Unit:
    level: str  # the shortest length that keeps the unit: short, column or full
    text: str  # Markdown, whitespace normalised to single spaces
    line: int  # 1-based line of its tag in the file
    paragraph: int  # 0-based paragraph of the text
    when: str | None = None  # '+': only with our_work.contribution, '-': only without, None: always

    def kept(self, contribution: str | None) -> bool:
        return self.when is None or (self.when == "+") == bool(contribution)

    @property
    def rank(self) -> int:
        return LEVELS.index(self.level)


@dataclass
class RelatedText:
    name: str  # 'intro', 'conclusion' or a group id
    path: str  # 'related/<name>.md'
    title: str | None  # run-in heading from a '# Title' line (intro and conclusion only)
    units: list[Unit]
    last_line: int  # the file's last line: where a missing sentence goes


@dataclass
class RelatedTexts:
    texts: dict[str, RelatedText] = field(default_factory=dict)  # by name, in file order
    present: bool = False  # whether the knowledge base has a related/ folder at all

    def ordered(self, group_ids: list[str]) -> list[RelatedText]:
        names = [INTRO, *group_ids, CONCLUSION]
        return [self.texts[n] for n in names if n in self.texts]


def parse_related(name: str, path: str, text: str) -> tuple[RelatedText, list[Problem]]:
    """One related-work text from its file's text; never raises on bad input."""
    problems: list[Problem] = []
    text = COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    lines = text.splitlines()
    title = None
    units: list[Unit] = []
    current: tuple[str, int, list[str], str | None] | None = None
    paragraph, blank_before = 0, False

    def close() -> None:
        nonlocal current
        if current is not None:
            level, line, parts, when = current
            body = re.sub(r"\s+", " ", " ".join(parts)).strip()
            if not body:
                problems.append(Problem(path, line, f"the {{{level}}} unit is empty", "a sentence after the tag"))
            else:
                units.append(Unit(level, body, line, paragraph, when))
        current = None

    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            blank_before = True
            continue
        if line.startswith("# ") and not units and current is None and title is None:
            title = line[2:].strip()
            continue
        tag = TAG.match(line)
        if tag:
            close()
            if blank_before and units:
                paragraph += 1
            blank_before = False
            level = tag.group(1)
            if level not in LEVELS:
                problems.append(
                    Problem(path, i, f"unknown tag '{{{level}}}'", "{short}, {column} or {full} at the start of a unit")
                )
                level = "full"
            current = (level, i, [line[tag.end() :]], tag.group(2))
            continue
        if current is None or blank_before:
            problems.append(
                Problem(
                    path,
                    i,
                    "text outside a tagged unit",
                    "each sentence to start on its own line with {short}, {column} or {full}",
                )
            )
            blank_before = False
            continue
        current[2].append(line)
    close()
    return RelatedText(name, path, title, units, max(len(lines), 1)), problems


# ---------------------------------------------------------------------------------------------
# citations and words


def cited(text: str) -> list[str]:
    """Keys cited in Markdown, in order, each once."""
    out: list[str] = []
    for key, _ in md.citations(md.scan(text).prose):
        if key not in out:
            out.append(key)
    return out


def prose_words(text: str) -> int:
    """Words a reader reads: bracketed citations left out, a textual citation counted as one name."""
    text = md.BRACKET.sub("", text)
    return md.word_count(md.CITE.sub("Name", text))


def drop_citations(text: str, keep: Callable[[str], bool]) -> str | None:
    """The unit without citations of papers `keep` rejects; None when the unit cannot stand without them.

    A key leaves a bracketed list `[@a; @b]`; a bracket left empty, or a textual `@key` (the
    sentence's subject), removes the whole unit.
    """

    def bracket(m: re.Match) -> str:
        parts = [p for p in m.group(1).split(";") if not any(not keep(k) for k in cited(p))]
        return "[" + ";".join(parts).strip() + "]" if parts else "\0"

    out = md.BRACKET.sub(bracket, text)
    if "\0" in out:
        return None
    masked = md.BRACKET.sub(lambda m: " " * len(m.group(0)), out)
    if any(not keep(k) for k in cited(masked)):
        return None
    return out


# ---------------------------------------------------------------------------------------------
# the check


def check_related(survey: Survey) -> list[Problem]:
    """Every rule the related-work texts must keep; empty when the knowledge base has no related/ folder."""
    related: RelatedTexts = survey.related
    if not related.present:
        return _check_columns(survey)
    out: list[Problem] = []
    config = survey.config
    group_ids = [g.id for g in config.groups]
    known = {INTRO, CONCLUSION, *group_ids}
    for name, t in related.texts.items():
        if name not in known:
            out.append(
                Problem(
                    t.path,
                    1,
                    f"'{name}' is not a related-work text",
                    "related/intro.md, related/conclusion.md or related/<group id>.md with a group of atlas.yml",
                )
            )
        elif name in group_ids and t.title is not None:
            out.append(
                Problem(
                    t.path,
                    1,
                    "a group text has its own '# ' title",
                    f"no title line: the group's title lives in atlas.yml ('{config.group(name).title}')",
                )
            )
    for name in (INTRO, CONCLUSION):
        if name not in related.texts:
            out.append(
                Problem(
                    f"{RELATED}/{name}.md",
                    1,
                    "missing",
                    f"the {'opening' if name == INTRO else 'closing'} text of the related work",
                )
            )
    for gid in group_ids:
        members = [n for n in survey.in_group(gid) if survey.relevance(n) != "excluded"]
        text = related.texts.get(gid)
        if members and text is None:
            out.append(
                Problem(
                    f"{RELATED}/{gid}.md",
                    1,
                    "missing",
                    f"a related-work text for the group '{gid}' citing its {len(members)} papers",
                )
            )
            continue
        if text is None:
            continue
        have = {k for u in text.units for k in cited(u.text)}
        for n in members:
            if n.key not in have:
                out.append(
                    Problem(
                        text.path,
                        text.last_line,
                        f"paper '{n.key}' ({n.meta.short}) of group '{gid}' is not cited in its text",
                        f"a unit citing [@{n.key}] (tag it {{full}} at least), in this text",
                    )
                )
    for t in related.texts.values():
        out += _check_units(survey, t)
    out += _check_lengths(survey)
    out += _check_settings(survey) + _check_columns(survey)
    return out


def _check_units(survey: Survey, t: RelatedText) -> list[Problem]:
    out: list[Problem] = []
    ours = survey.config.our_work
    prev: Unit | None = None
    for u in t.units:
        scanned = md.scan(u.text)
        if CONTRIBUTION in u.text and u.when != "+":
            out.append(
                Problem(
                    t.path,
                    u.line,
                    f"{CONTRIBUTION} in a unit kept without a contribution",
                    f"the tag {{{u.level} +contribution}}, kept only when atlas.yml sets our_work.contribution",
                    Code.CLAIM,
                )
            )
        voice = SURVEY_VOICE.search(scanned.prose)
        if voice:
            out.append(
                Problem(
                    t.path,
                    u.line,
                    f"'{voice.group(0)}' is a survey's voice, not an author's",
                    "a sentence that states what the cited work does, as a paper's related work does",
                    Code.CLAIM,
                )
            )
        novelty = NOVELTY.search(scanned.prose)
        if novelty and u.when != "+":
            out.append(
                Problem(
                    t.path,
                    u.line,
                    f"'{novelty.group(0)}' claims novelty, which only the author's contribution may do",
                    f"a neutral sentence, or the tag {{{u.level} +contribution}} and atlas.yml's our_work.contribution",
                    Code.CLAIM,
                )
            )
        for key, _ in md.citations(scanned.prose):
            if key not in survey.entries:
                out.append(
                    Problem(
                        t.path,
                        u.line,
                        f"citation '@{key}' is not a key of bib/references.bib",
                        "[@key] or @key with a key of the bib",
                        Code.CITATION,
                    )
                )
            elif u.level == "short" and key in survey.notes and survey.relevance(survey.notes[key]) != "core":
                out.append(
                    Problem(
                        t.path,
                        u.line,
                        f"the short form cites '{key}', whose relevance is {survey.relevance(survey.notes[key])}",
                        "{short} units cite only core papers; tag this unit {column} or {full}",
                    )
                )
        if scanned.stray_dollars:
            out.append(
                Problem(t.path, u.line, "a '$' that opens no math", "math as $x$, or a literal dollar written \\$")
            )
        opening = re.sub(r"^[\s\"'(\[]+", "", u.text)
        m = PRONOUN_OPENING.match(opening)
        if m:
            out.append(
                Problem(
                    t.path,
                    u.line,
                    f"the unit opens with '{m.group(0)}', whose subject is outside it",
                    "a unit that names its subject (it may be cut from the sentence before it)",
                )
            )
        c = CONNECTIVE_OPENING.match(opening)
        if c and (prev is None or prev.rank > u.rank or prev.paragraph != u.paragraph):
            out.append(
                Problem(
                    t.path,
                    u.line,
                    f"the unit opens with '{c.group(0)}' but the unit before it is dropped at the {u.level} length",
                    "a connective only after a unit of the same or a shorter length, in the same paragraph",
                )
            )
        for line, message in claims(scanned.prose, ours):  # the notes' rule, one for every text
            out.append(
                Problem(
                    t.path,
                    u.line + line - 1,
                    message,
                    "only what atlas.yml's our_work states (its optional fields let a text say more), "
                    "or a hedged 'if'/'whether' sentence",
                    Code.CLAIM,
                )
            )
        prev = u
    return out


def _check_lengths(survey: Survey) -> list[Problem]:
    out = []
    group_ids = [g.id for g in survey.config.groups]
    for level, (low, high) in survey.config.export.lengths.items():
        units = [u for t in survey.related.ordered(group_ids) for u in t.units if u.rank <= LEVELS.index(level)]
        words = sum(prose_words(u.text) for u in units)
        if not low <= words <= high:
            out.append(
                Problem(
                    f"{RELATED}/",
                    1,
                    f"the {level} form has {words} words",
                    f"{low} to {high} words (atlas.yml export.lengths.{level}): "
                    f"tag units so that the {level} length keeps that many",
                )
            )
    return out


def _check_settings(survey: Survey) -> list[Problem]:
    s = survey.config.export
    out = []
    ids = [g.id for g in survey.config.groups]
    for g in s.groups:
        if g not in ids:
            out.append(
                Problem("atlas.yml", 1, f"export.groups names the unknown group '{g}'", "ids of atlas.yml's groups")
            )
    for k in [*s.papers, *s.table_papers]:
        if k not in survey.entries:
            out.append(
                Problem(
                    "atlas.yml",
                    1,
                    f"export names '{k}', which is not a key of bib/references.bib",
                    "keys of the bib",
                    Code.CITATION,
                )
            )
    return out


MAX_CELL = 14  # characters of a comparison-table cell that fits the one-column table


def _check_columns(survey: Survey) -> list[Problem]:
    """The table columns that notes and our-work profile name exist in atlas.yml's export.table_columns."""
    out = []
    columns = [c.id for c in survey.config.export.table_columns]
    for note in survey.notes.values():
        for n in note.meta.numbers:
            if n.column is not None and len(str(n.value)) > MAX_CELL:
                out.append(
                    Problem(
                        note.where,
                        note.key_lines.get("numbers", 2),
                        f"key number '{n.what}' fills a table cell with '{n.value}' ({len(str(n.value))} characters)",
                        f"a value of at most {MAX_CELL} characters (a one-column table cell), the rest in 'what'",
                        Code.SCHEMA,
                    )
                )
            if n.column is not None and n.column not in columns:
                out.append(
                    Problem(
                        note.where,
                        note.key_lines.get("numbers", 2),
                        f"key number '{n.what}' names the unknown table column '{n.column}'",
                        f"one of atlas.yml's export.table_columns: {', '.join(columns)}",
                        Code.SCHEMA,
                    )
                )
    for cid in survey.config.our_work.table:
        if cid not in columns:
            out.append(
                Problem(
                    "atlas.yml",
                    1,
                    f"our_work.table names the unknown table column '{cid}'",
                    f"one of export.table_columns: {', '.join(columns)}",
                    Code.SCHEMA,
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# composing a section


@dataclass
class Paragraph:
    name: str  # the text it comes from
    title: str | None  # run-in heading (a group's title, or the text's own)
    units: list[Unit]

    @property
    def markdown(self) -> str:
        return " ".join(u.text for u in self.units)


@dataclass
class Section:
    paragraphs: list[Paragraph]

    @property
    def words(self) -> int:
        return sum(prose_words(p.markdown) for p in self.paragraphs)

    @property
    def keys(self) -> list[str]:
        out: list[str] = []
        for p in self.paragraphs:
            out += [k for k in cited(p.markdown) if k not in out]
        return out


def compose(
    survey: Survey,
    length: str,
    *,
    groups: list[str] | None = None,
    keep: Callable[[str], bool] = lambda key: True,
    words: int | None = None,
) -> tuple[Section, list[Problem]]:
    """The section at a length: units up to that level, citations `keep` rejects removed, then cut to `words`.

    A word budget drops units from the lowest priority up (the longest level first, within it the
    text's later units first); a paragraph left without units disappears. The budget is never
    exceeded: when not even the first unit fits, the result is a problem, not a longer section.
    """
    group_ids = [g.id for g in survey.config.groups]
    chosen = [gid for gid in group_ids if not groups or gid in groups]
    level = LEVELS.index(length)
    candidates: list[tuple[int, int, RelatedText, Unit]] = []  # (rank, order, text, unit)
    order = 0
    contribution = survey.config.our_work.contribution
    for t in survey.related.ordered(chosen):
        for u in t.units:
            if u.rank > level or not u.kept(contribution):
                continue
            text = drop_citations(u.text, lambda k: keep(k) and not _excluded(survey, k))
            if text is None:
                continue
            if contribution:
                text = text.replace(CONTRIBUTION, contribution.strip())
            candidates.append((u.rank, order, t, Unit(u.level, text, u.line, u.paragraph, u.when)))
            order += 1
    kept = candidates
    if words is not None:
        budget, kept = words, []
        for item in sorted(candidates, key=lambda c: (c[0], c[1])):
            n = prose_words(item[3].text)
            if n > budget:
                break
            kept.append(item)
            budget -= n
        if candidates and not kept:
            smallest = prose_words(min(candidates, key=lambda c: (c[0], c[1]))[3].text)
            return Section([]), [
                Problem(
                    "--words",
                    1,
                    f"a budget of {words} words holds no unit of the section (the first needs {smallest})",
                    f"--words {smallest} or more, or no --words",
                )
            ]
    kept.sort(key=lambda c: c[1])
    paragraphs: list[Paragraph] = []
    for _, _, t, u in kept:
        title = survey.config.group(t.name).title if t.name in group_ids else t.title
        last = paragraphs[-1] if paragraphs else None
        if last is not None and last.name == t.name and last.units[-1].paragraph == u.paragraph:
            last.units.append(u)
        else:
            paragraphs.append(Paragraph(t.name, title if (last is None or last.name != t.name) else None, [u]))
    return Section(paragraphs), []


def _excluded(survey: Survey, key: str) -> bool:
    note = survey.notes.get(key)
    return note is not None and survey.relevance(note) == "excluded"


# ---------------------------------------------------------------------------------------------
# the site


def site_markdown(survey: Survey, latex: Callable[[str], str]) -> str:
    """The site's Related work page: each length as prose, then the conclusion, each with its LaTeX to copy.

    `latex(length)` returns the LaTeX of the section at that length (the export's renderer, passed
    in so that this module stays free of pandoc). Citations stay in pandoc syntax: the site turns
    them into links.
    """
    if not survey.related.present:
        return "# Related work\n\nThe knowledge base has no related-work texts (`related/*.md`) yet.\n"
    out = [
        "# Related work\n",
        "The related-work section of our paper, written by theme in `related/*.md` and cut to a length by "
        "sentence priority: **short** keeps the core papers, **column** (the default of `atlas export`) fills "
        "about one column of the AAAI layout, **full** cites every paper that is not excluded. Each length "
        "ends with its LaTeX, ready to copy (the button at the top right of the block).\n",
    ]
    for length in LEVELS:
        section, _ = compose(survey, length)
        out.append(f"## {length.capitalize()} ({section.words} words, {len(section.keys)} papers cited)\n")
        for p in section.paragraphs:
            head = f"**{p.title}.** " if p.title else ""
            out.append(head + p.markdown + "\n")
        out.append(f'??? note "LaTeX of the {length} section"\n')
        out.append(
            "    ```latex\n"
            + "\n".join("    " + ln if ln else "" for ln in latex(length).rstrip("\n").splitlines())
            + "\n    ```\n"
        )
    conclusion = survey.related.texts.get(CONCLUSION)
    if conclusion is not None:
        out.append("## Conclusion: what the papers show together\n")
        for i in sorted({u.paragraph for u in conclusion.units}):
            out.append(" ".join(u.text for u in conclusion.units if u.paragraph == i) + "\n")
    return "\n".join(out)
