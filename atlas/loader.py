"""The only reader of atlas.yml, bib/references.bib, papers/*.md and the repository's inventory.

`load(root)` returns the Survey and every problem found, never raising on bad input: each
problem names a file and line, what is wrong and what is expected. It runs in plain phases:

1. read: atlas.yml, the bib and every file of papers/ as text;
2. validate: the configuration, the bib entries, each note's front matter and body (atlas.checks);
3. resolve references: note keys, lineage, citations, tests and notebooks against the bib and files;
4. import modules (only when deep, i.e. for the check): each implementation imports and names its note.

The inventory (modules, tests, notebooks, question pages) is read last, into the Survey.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import ValidationError

from atlas import checks, lineage, provenance
from atlas import markdown as md
from atlas.bib import BibEntry, parse_bib
from atlas.inventory import read_inventory
from atlas.model import AtlasConfig, Note, NoteMeta, Survey
from atlas.problems import AtlasError, Code, Problem, rel
from atlas.related import RELATED, RelatedTexts, check_related, parse_related

# libyaml's parser when PyYAML was built with it (the wheels are), else the pure-Python one: same results
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CONFIG = "atlas.yml"
BIB = checks.BIB
PAPERS = "papers"


@dataclass
class _Text:
    path: Path
    where: str  # relative to the root
    text: str


# ---------------------------------------------------------------------------------------------
# 1. read


def _read_text(path: Path, root: Path, problems: list[Problem]) -> str | None:
    where = rel(path, root)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(
            Problem(where, 1, f"cannot read the file ({exc.strerror or exc})", "a readable UTF-8 text file", Code.FILE)
        )
        return None
    if b"\0" in data:
        problems.append(Problem(where, 1, "binary file (it contains NUL bytes)", "a UTF-8 text file", Code.FILE))
        return None
    try:
        # a byte-order mark and Windows line ends (as some editors save) read as the same text
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(
            Problem(where, line, f"not UTF-8 (byte 0x{data[exc.start]:02x})", "a UTF-8 text file", Code.FILE)
        )
        return None


def _read_required(root: Path, name: str, expected: str, problems: list[Problem]) -> str | None:
    path = root / name
    if not path.exists():
        problems.append(Problem(name, 1, "missing", expected, Code.FILE))
        return None
    return _read_text(path, root, problems)


def _read_notes(root: Path, problems: list[Problem]) -> list[_Text]:
    papers = root / PAPERS
    out = []
    for path in sorted(papers.iterdir()) if papers.is_dir() else []:
        if path.name.startswith("."):
            continue
        if path.is_dir() or (path.exists() and not path.is_file()):
            what = "a folder, not a note" if path.is_dir() else "not a regular file"
            problems.append(
                Problem(rel(path, root), 1, what, "papers/ to hold only notes named <bibkey>.md", Code.FILE)
            )
            continue
        if path.suffix != ".md":
            problems.append(
                Problem(rel(path, root), 1, "not a note", "papers/ to hold only notes named <bibkey>.md", Code.FILE)
            )
            continue
        text = _read_text(path, root, problems)
        if text is not None:
            out.append(_Text(path, rel(path, root), text))
    return out


# ---------------------------------------------------------------------------------------------
# 2. validate


def _yaml(text: str, path: str, first_line: int, problems: list[Problem]) -> tuple[Any, dict]:
    """Parse YAML; return (data, lines) where lines maps key -> line and (key, i) -> line of item i."""
    try:
        try:
            node = yaml.compose(text, Loader=_YAML_LOADER)
            data = yaml.load(text, Loader=_YAML_LOADER)
        except yaml.YAMLError:  # parse again in pure Python: its messages name what it expected
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = first_line + (mark.line if mark else 0)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.append(
            Problem(path, line, f"YAML syntax error: {what}", "valid YAML (key: value, lists as [a, b])", Code.YAML)
        )
        return None, {}
    lines: dict = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines[k.value] = first_line + k.start_mark.line
            if isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    lines[(k.value, i)] = first_line + item.start_mark.line
    return data, lines


def _pydantic_problems(errors: list, path: str, lines: dict, allowed: list[str], fallback: int) -> list[Problem]:
    out = []
    for err in errors:
        loc = err["loc"]
        key = str(loc[0]) if loc else ""
        line = lines.get(tuple(loc[:2]) if len(loc) >= 2 else key) or lines.get(key) or fallback
        kind, dotted = err["type"], ".".join(map(str, loc))
        if kind == "extra_forbidden":
            out.append(
                Problem(path, line, f"unknown key '{key}'", "expected one of: " + ", ".join(allowed), Code.SCHEMA)
            )
        elif kind == "missing":
            out.append(
                Problem(
                    path, fallback, f"missing key '{dotted}'", "every required key: " + ", ".join(allowed), Code.SCHEMA
                )
            )
        elif kind.endswith("_type"):
            want = "a list like [a, b]" if kind == "list_type" else kind.replace("_type", "")
            out.append(
                Problem(
                    path,
                    line,
                    f"'{dotted}' has a value of the wrong type ({err['msg'].lower()})",
                    f"expected {want}",
                    Code.SCHEMA,
                )
            )
        else:
            msg, _, expected = err["msg"].partition("; ")
            out.append(Problem(path, line, msg.removeprefix("Value error, "), expected, Code.SCHEMA))
    return out


def _validate_config(text: str, problems: list[Problem]) -> AtlasConfig | None:
    before = len(problems)
    data, lines = _yaml(text, CONFIG, 1, problems)
    if len(problems) > before:
        return None
    if not isinstance(data, dict):
        what = "empty" if data is None else "not a mapping"
        expected = "the keys " + ", ".join(AtlasConfig.model_fields)
        problems.append(Problem(CONFIG, 1, f"{CONFIG} is {what}", expected, Code.SCHEMA))
        return None
    try:
        return AtlasConfig.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc.errors(), CONFIG, lines, list(AtlasConfig.model_fields), 1)
        return None


def _split_front_matter(text: str) -> tuple[str, str, int] | None:
    """(front matter, body, 1-based line of the body) or None when there is no front matter."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "".join(lines[1:i]), "".join(lines[i + 1 :]), i + 2
    return None


def _empty_meta(data: dict, bad: set[str]) -> NoteMeta:
    """A NoteMeta of the usable fields of data; the faulty ones fall back to empty values."""
    values = {}
    for name, f in NoteMeta.model_fields.items():
        if name in data and name not in bad:
            values[name] = data[name]
        elif f.is_required():
            values[name] = [] if get_origin(f.annotation) is list else ""
        else:
            values[name] = f.get_default(call_default_factory=True)
    return NoteMeta.model_construct(**values)


def _validate_note(read: _Text, config: AtlasConfig, problems: list[Problem]) -> Note | None:
    split = _split_front_matter(read.text)
    if split is None:
        problems.append(
            Problem(
                read.where,
                1,
                "no front matter",
                "the note to start with a '---' line, the facets in YAML, and a closing '---' line",
                Code.SCHEMA,
            )
        )
        return None
    front, body, body_line = split
    before = len(problems)
    data, lines = _yaml(front, read.where, 2, problems)
    if len(problems) > before:
        return None
    if not isinstance(data, dict):
        what = "empty" if data is None else "not a mapping"
        problems.append(Problem(read.where, 2, f"front matter is {what}", "key: value lines", Code.SCHEMA))
        return None
    valid = True
    draft = checks.is_draft(body)
    try:
        meta = NoteMeta.model_validate(data, context={"config": config})
    except ValidationError as exc:
        errors = exc.errors()
        if draft:  # a draft's unset keys are what it still lacks, not errors; what it sets must be right
            errors = [
                e for e in errors if not (e["loc"] and e["loc"][0] != "key" and checks.unset(data.get(e["loc"][0])))
            ]
        problems += _pydantic_problems(errors, read.where, lines, list(NoteMeta.model_fields), 1)
        meta = _empty_meta(data, {str(e["loc"][0]) for e in exc.errors() if e["loc"]})  # keep checking what is usable
        valid = False
    note = Note(read.path, meta, body, body_line, lines, valid=valid and not draft)
    note.sections = {title: content for title, _, content in md.sections(body)}
    if draft:
        note.missing = checks.draft_missing(data)
        return note
    problems += checks.check_body(note, config.our_work)
    if valid:
        problems += checks.check_aliases(note) + provenance.check_numbers(note)
    return note


# ---------------------------------------------------------------------------------------------
# the phases together


def load(root: Path, deep: bool = True) -> tuple[Survey | None, list[Problem]]:
    """Load and validate everything under root. The Survey is None only when atlas.yml is unusable.

    deep=False skips importing the implementation modules (the check does it; the site and export need not).
    """
    root = root.resolve()
    problems: list[Problem] = []
    # 1. read
    config_text = _read_required(root, CONFIG, "atlas.yml with vocabularies, groups and our_work", problems)
    bib_text = _read_required(root, BIB, "the survey's BibTeX file", problems)
    note_texts = _read_notes(root, problems) if config_text is not None else []
    # 2. validate
    config = _validate_config(config_text, problems) if config_text is not None else None
    entries: dict[str, BibEntry] = {}
    if bib_text is not None:
        entries, bib_problems = parse_bib(bib_text, BIB)
        problems += bib_problems
    if config is None:
        return None, _ordered(problems)
    candidates = [n for n in (_validate_note(t, config, problems) for t in note_texts) if n is not None]
    notes: dict[str, Note] = {}
    drafts: dict[str, list[str]] = {}
    # 3. resolve references
    for note in candidates:
        problems += checks.check_references(note, entries, root)
        if note.missing is not None and note.key in entries:
            drafts.setdefault(note.key, note.missing)
        if not note.valid:
            continue
        if note.key in notes:
            problems.append(
                Problem(
                    note.where,
                    note.key_lines.get("key", 2),
                    f"a second note for '{note.key}'",
                    "one note per paper",
                    Code.NOTE_KEY,
                )
            )
            continue
        notes[note.key] = note
    # 4. import modules
    if deep:
        if str(root) not in sys.path and (root / "reference_impls").is_dir():
            sys.path.insert(0, str(root))
        for note in candidates:
            problems += checks.check_imports(note)
    # a note whose key has no bib entry is reported by check_references; the model keeps only notes it can cite
    ordered = {k: notes[k] for k in entries if k in notes}
    inventory = read_inventory(root, list(ordered.values()))
    related = _read_related(root, problems)
    drafts = {k: drafts[k] for k in entries if k in drafts}
    survey = Survey(root, config, entries, ordered, inventory, related, drafts)
    problems += lineage.backwards(survey) + lineage.cycles(survey)
    problems += check_related(survey)
    return survey, _ordered(_without_echoes(problems))


ECHO_CODES = {Code.CITATION, Code.NOTE_KEY, Code.LINEAGE}


def _without_echoes(problems: list[Problem]) -> list[Problem]:
    """The problems less those that only repeat a bib entry's parse failure: its key cited, built on or noted."""
    broken = {
        m.group(1) for p in problems if p.code == Code.BIB_PARSE and (m := re.match(r"entry '([^']+)'", p.message))
    }
    if not broken:
        return problems
    keys = "|".join(re.escape(k) for k in sorted(broken))
    echo = re.compile(r"'@?(" + keys + r")',?(?: which)? is not (?:in|a key of) ")
    return [p for p in problems if not (p.code in ECHO_CODES and echo.search(p.message))]


def _read_related(root: Path, problems: list[Problem]) -> RelatedTexts:
    """related/*.md: the related-work texts (intro, one per group, conclusion), parsed by atlas.related."""
    related = RelatedTexts(present=(root / RELATED).is_dir())
    for path in sorted((root / RELATED).glob("*.md")) if related.present else []:
        text = _read_text(path, root, problems)
        if text is not None:
            parsed, text_problems = parse_related(path.stem, rel(path, root), text)
            related.texts[path.stem] = parsed
            problems += text_problems
    return related


def _ordered(problems: list[Problem]) -> list[Problem]:
    return sorted(set(problems), key=lambda p: (p.path, p.line, p.message))


def load_checked(root: Path, deep: bool = True) -> Survey:
    """For the site and the export: the Survey, or AtlasError with every problem."""
    survey, problems = load(root, deep)
    if problems or survey is None:
        raise AtlasError(problems)
    return survey
