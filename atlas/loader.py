"""The only reader of atlas.yml, bib/references.bib and papers/*.md.

`load(root)` returns the Survey and every problem found, never raising on bad input: each
problem names a file and line, what is wrong and what is expected.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from atlas import markdown as md
from atlas.bib import BibEntry, parse_bib
from atlas.model import SECTIONS, AtlasConfig, Note, NoteMeta, Survey
from atlas.problems import AtlasError, Problem, rel
from atlas.related import RELATED, RelatedTexts, check_related, parse_related

CONFIG = "atlas.yml"
BIB = "bib/references.bib"
PAPERS = "papers"
MIN_WORDS, MAX_WORDS = 200, 900


def _read_text(path: Path, root: Path, problems: list[Problem]) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(rel(path, root), 1, f"cannot read the file ({exc.strerror or exc})", "a readable UTF-8 text file"))
        return None
    if b"\0" in data:
        problems.append(Problem(rel(path, root), 1, "binary file (it contains NUL bytes)", "a UTF-8 text file"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(Problem(rel(path, root), line, f"not UTF-8 (byte 0x{data[exc.start]:02x})", "a UTF-8 text file"))
        return None


def _yaml(text: str, path: str, first_line: int, problems: list[Problem]) -> tuple[Any, dict]:
    """Parse YAML; return (data, lines) where lines maps key -> line and (key, i) -> line of item i."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = first_line + (mark.line if mark else 0)
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.append(Problem(path, line, f"YAML syntax error: {what}", "valid YAML (key: value, lists as [a, b])"))
        return None, {}
    lines: dict = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines[k.value] = first_line + k.start_mark.line
            if isinstance(v, yaml.SequenceNode):
                for i, item in enumerate(v.value):
                    lines[(k.value, i)] = first_line + item.start_mark.line
    return data, lines


def _pydantic_problems(exc: ValidationError, path: str, lines: dict, allowed_keys: list[str], fallback: int) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = err["loc"]
        key = str(loc[0]) if loc else ""
        line = lines.get(tuple(loc[:2]) if len(loc) >= 2 else key) or lines.get(key) or fallback
        kind = err["type"]
        if kind == "extra_forbidden":
            out.append(Problem(path, line, f"unknown key '{key}'", "expected one of: " + ", ".join(allowed_keys)))
        elif kind == "missing":
            out.append(Problem(path, fallback, f"missing key '{'.'.join(map(str, loc))}'", "every required key: " + ", ".join(allowed_keys)))
        elif kind.endswith("_type"):
            want = "a list like [a, b]" if kind == "list_type" else kind.replace("_type", "")
            out.append(Problem(path, line, f"'{'.'.join(map(str, loc))}' has a value of the wrong type ({err['msg'].lower()})", f"expected {want}"))
        else:
            msg, _, expected = err["msg"].partition("; ")
            out.append(Problem(path, line, msg.removeprefix("Value error, "), expected))
    return out


def load_config(root: Path, problems: list[Problem]) -> AtlasConfig | None:
    path = root / CONFIG
    text = _read_text(path, root, problems) if path.exists() else None
    if text is None:
        if not path.exists():
            problems.append(Problem(CONFIG, 1, "missing", "atlas.yml with vocabularies, groups and our_work"))
        return None
    data, lines = _yaml(text, CONFIG, 1, problems)
    if data is None:
        return None
    try:
        return AtlasConfig.model_validate(data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, CONFIG, lines, list(AtlasConfig.model_fields), 1)
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


def load_note(path: Path, root: Path, config: AtlasConfig, problems: list[Problem]) -> Note | None:
    where = rel(path, root)
    text = _read_text(path, root, problems)
    if text is None:
        return None
    split = _split_front_matter(text)
    if split is None:
        problems.append(Problem(where, 1, "no front matter", "the note to start with a '---' line, the facets in YAML, and a closing '---' line"))
        return None
    front, body, body_line = split
    data, lines = _yaml(front, where, 2, problems)
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(Problem(where, 2, "front matter is not a mapping", "key: value lines"))
        return None
    valid = True
    try:
        meta = NoteMeta.model_validate(data, context={"config": config})
    except ValidationError as exc:
        problems += _pydantic_problems(exc, where, lines, list(NoteMeta.model_fields), 1)
        # keep checking what is usable: the faulty fields fall back to empty values
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        usable = {k: v for k, v in data.items() if k in NoteMeta.model_fields and k not in bad}
        empty = {n: ([] if "list" in str(f.annotation) else (None if n in ("notebook", "relevance") else "")) for n, f in NoteMeta.model_fields.items()}
        meta = NoteMeta.model_construct(**{**empty, **usable})
        valid = False
    note = Note(path, meta, body, body_line, {k: v for k, v in lines.items() if isinstance(k, str)})
    for title, line, content in md.sections(body):
        note.sections[title] = content
    note.valid = valid
    return note


def _module_of(dotted: str) -> tuple[Any, str | None]:
    """Import a dotted path inside reference_impls: (module, error message or None)."""
    parts = dotted.split(".")
    for n in range(len(parts), 1, -1):
        name = ".".join(parts[:n])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name) and exc.name != "reference_impls":
                continue
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # the module itself is broken: report it, one line
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        obj = module
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return None, f"{name} has no attribute '{attr}'"
            obj = getattr(obj, attr)
        return module, None
    return None, "no such module"


def _imports(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def check_note(note: Note, survey_entries: dict[str, BibEntry], root: Path, deep: bool = True) -> list[Problem]:
    """Every cross-reference of a note: bib, lineage, citations, code, tests, notebook, sections."""
    out: list[Problem] = []
    where = rel(note.path, root)
    m = note.meta
    kl = note.key_lines
    if note.path.stem != m.key:
        out.append(Problem(where, kl.get("key", 2), f"key '{m.key}' differs from the file name '{note.path.name}'", f"the file papers/{m.key}.md"))
    if m.key not in survey_entries:
        out.append(Problem(where, kl.get("key", 2), f"key '{m.key}' is not in {BIB}", "a note for a paper of the bib"))
    for i, k in enumerate(m.builds_on):
        line = note.key_lines.get("builds_on", 2)
        if k not in survey_entries:
            out.append(Problem(where, line, f"builds_on '{k}' is not a key of {BIB}", "keys of earlier papers of the survey"))
        elif k == m.key:
            out.append(Problem(where, line, "a paper cannot build on itself", "keys of earlier papers of the survey"))
    importable = set()
    for dotted in m.implementation if deep else []:
        module, error = _module_of(dotted)
        if not error:
            importable.add(module.__name__)
        line = kl.get("implementation", 2)
        if error:
            out.append(Problem(where, line, f"implementation '{dotted}' does not import ({error})", "a dotted path to a module, class or function inside reference_impls"))
        elif f"papers/{m.key}.md" not in (module.__doc__ or ""):
            out.append(Problem(where, line, f"{module.__name__}'s docstring does not link back to papers/{m.key}.md", "the module docstring to name the note path"))
    claimed = importable  # a module that does not import is reported once, above
    for t in m.tests:
        path = root / t
        line = kl.get("tests", 2)
        if not path.is_file():
            out.append(Problem(where, line, f"test file '{t}' does not exist", "a path like tests/reference_impls/test_<mechanism>.py"))
            continue
        if claimed and not claimed & _imports(path):
            out.append(Problem(where, line, f"test file '{t}' imports none of {', '.join(sorted(claimed))}", "each test file to import the module it tests"))
    if m.notebook and not (root / m.notebook).is_file():
        out.append(Problem(where, kl.get("notebook", 2), f"notebook '{m.notebook}' does not exist", "a jupytext file under docs/notebooks/"))
    # body
    found = md.sections(note.body)
    titles = [t for t, _, _ in found]
    for s in SECTIONS:
        if s not in titles:
            out.append(Problem(where, note.body_line, f"missing section '## {s}'", "the sections " + ", ".join(f"'## {x}'" for x in SECTIONS)))
    for t, line, content in found:
        if t in SECTIONS and not content.strip():
            out.append(Problem(where, note.body_line + line - 1, f"section '## {t}' is empty", "a few sentences in our own words"))
    scanned = md.scan(note.body)
    for key, line in md.citations(scanned.prose):
        if key not in survey_entries:
            out.append(Problem(where, note.body_line + line - 1, f"citation '@{key}' is not a key of {BIB}", "[@key] or @key with a key of the bib (write \\@ for a literal at sign)"))
    for line in scanned.stray_dollars:
        out.append(Problem(where, note.body_line + line - 1, "a '$' that opens no math", "math as $x$ or $$x$$, or a literal dollar written \\$"))
    for span in scanned.math:
        if md.unbalanced_braces(span.tex):
            out.append(Problem(where, note.body_line + span.line - 1, f"unbalanced braces in math '{span.tex[:40]}'", "every '{' closed by a '}' inside the math"))
    words = md.word_count(scanned.prose)
    if not MIN_WORDS <= words <= MAX_WORDS:
        out.append(Problem(where, note.body_line, f"the body has {words} words", f"{MIN_WORDS} to {MAX_WORDS} words (aim for 250 to 700)"))
    return out


def load(root: Path, deep: bool = True) -> tuple[Survey | None, list[Problem]]:
    """Load and validate everything under root. The Survey is None only when atlas.yml or the bib is unusable.

    deep=False skips importing the implementation modules (the check does it; the export need not).
    """
    root = root.resolve()
    if str(root) not in sys.path and (root / "reference_impls").is_dir():
        sys.path.insert(0, str(root))
    problems: list[Problem] = []
    config = load_config(root, problems)
    bib_path = root / BIB
    entries: dict[str, BibEntry] = {}
    if not bib_path.exists():
        problems.append(Problem(BIB, 1, "missing", "the survey's BibTeX file"))
    else:
        text = _read_text(bib_path, root, problems)
        if text is not None:
            entries, bib_problems = parse_bib(text, BIB)
            problems += bib_problems
    if config is None:
        return None, problems
    notes: dict[str, Note] = {}
    papers = root / PAPERS
    for path in sorted(papers.iterdir()) if papers.is_dir() else []:
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix != ".md":
            problems.append(Problem(rel(path, root), 1, "not a note", "papers/ to hold only notes named <bibkey>.md"))
            continue
        note = load_note(path, root, config, problems)
        if note is None:
            continue
        if not note.valid:
            problems += [p for p in check_note(note, entries, root, deep) if "key ''" not in p.message]
            continue
        if note.key in notes:
            problems.append(Problem(rel(path, root), note.key_lines.get("key", 2), f"a second note for '{note.key}'", "one note per paper"))
            continue
        notes[note.key] = note
        problems += check_note(note, entries, root, deep)
    ordered = {k: notes[k] for k in entries if k in notes}
    ordered.update({k: n for k, n in notes.items() if k not in ordered})
    # issue 12: the related-work texts, read here, parsed and checked by atlas.related
    related = RelatedTexts(present=(root / RELATED).is_dir())
    for path in sorted((root / RELATED).glob("*.md")) if related.present else []:
        text = _read_text(path, root, problems)
        if text is not None:
            parsed, text_problems = parse_related(path.stem, rel(path, root), text)
            related.texts[path.stem] = parsed
            problems += text_problems
    survey = Survey(root, config, entries, ordered, related)
    problems += check_related(survey)
    return survey, sorted(set(problems), key=lambda p: (p.path, p.line, p.message))


def load_checked(root: Path, deep: bool = True) -> Survey:
    """For the site and the export: the Survey, or AtlasError with every problem."""
    survey, problems = load(root, deep)
    if problems or survey is None:
        raise AtlasError(problems)
    return survey
