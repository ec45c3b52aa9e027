"""The rules a note is held to, in the loader's phases after reading it.

- validate (the note alone): sections, math, length, aliases, and the numbers of its Method
  (atlas.provenance);
- resolve (against the bib and the repository): its key, lineage, citations, tests, notebook;
- import (the check only): each implementation imports and its module names the note.

Every rule returns Problems (`path:line: what; expected`) with a Code; none raises.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from atlas import markdown as md
from atlas.bib import BibEntry
from atlas.claims import claims as our_work_claims
from atlas.inventory import parse_python
from atlas.model import SECTIONS, Note
from atlas.problems import Code, Problem

BIB = "bib/references.bib"
MIN_WORDS, MAX_WORDS = 200, 900
CITE_EXPECTED = "[@key] or @key with a key of the bib (write \\@ for a literal at sign)"

# ---------------------------------------------------------------------------------------------
# validate: the note alone

# A draft is a note with no prose yet: every line of its body is blank or a heading (what
# `atlas add` scaffolds). The check lists it as pending with what it still lacks; the front-matter
# keys it leaves unset (empty, [] or absent) are not errors, the ones it sets are held to the rules.
DRAFT_KEYS = ("short", "group", "modality", "latent", "prior", "conditioning", "implementation", "tests")


def is_draft(body: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in body.splitlines())


def unset(value: object) -> bool:
    return value is None or value == "" or value == []


def draft_missing(data: dict) -> list[str]:
    """What a draft note still lacks: its unset keys, then the five sections."""
    keys = [k for k in DRAFT_KEYS if unset(data.get(k))]
    return keys + ["the sections " + ", ".join(SECTIONS)]


BRIEF = "In brief"  # the optional section the catalogue appendix prints as the paper's paragraph
BRIEF_WORDS = (30, 90)
FACET_LABELS = re.compile(
    r"(?<![\w@-])(?:vq|rq|sq|dvae|continuous-kl|masked-parallel|diffusion-discrete|diffusion-continuous)(?![\w-])"
)


def _check_brief(note: Note, line: int, content: str) -> list[Problem]:
    """The In brief paragraph stands alone: its own citation, a length for the appendix, no facet labels."""
    out = []
    prose = md.scan(content).prose
    n = md.word_count(prose)
    if not BRIEF_WORDS[0] <= n <= BRIEF_WORDS[1]:
        out.append(
            Problem(
                note.where,
                line,
                f"the In brief paragraph has {n} words",
                f"{BRIEF_WORDS[0]} to {BRIEF_WORDS[1]} words, one paragraph for the catalogue appendix",
                Code.SECTION,
            )
        )
    if note.path.stem == note.key and f"@{note.key}" not in content:  # a wrong key is said once, elsewhere
        out.append(
            Problem(
                note.where, line, "the In brief paragraph does not cite its paper", f"[@{note.key}] in it", Code.SECTION
            )
        )
    label = FACET_LABELS.search(prose)
    if label:
        out.append(
            Problem(
                note.where,
                line,
                f"the In brief paragraph uses the facet label '{label.group(0)}' as a word",
                "plain words (vector quantisation, masked decoding, ...), as a reader of the appendix needs",
                Code.SECTION,
            )
        )
    return out


def check_body(note: Note, profile=None) -> list[Problem]:
    """The note's sections, citations, math and sentences about our work (held to `profile`, atlas.yml's our_work)."""
    out: list[Problem] = []
    where, first = note.where, note.body_line
    found = md.sections(note.body)
    titles = [t for t, _, _ in found]
    for s in SECTIONS:
        if s not in titles:
            expected = "the sections " + ", ".join(f"'## {x}'" for x in SECTIONS)
            out.append(Problem(where, first, f"missing section '## {s}'", expected, Code.SECTION))
    for t, line, content in found:
        if t in SECTIONS and not content.strip():
            out.append(
                Problem(
                    where,
                    first + line - 1,
                    f"section '## {t}' is empty",
                    "a few sentences in our own words",
                    Code.SECTION,
                )
            )
    scanned = md.scan(note.body)
    for line, command, keys in md.raw_latex_citations(scanned.prose):
        pandoc = (
            "@" + keys[0] if command == "citet" and len(keys) == 1 else "[" + "; ".join("@" + k for k in keys) + "]"
        )
        out.append(
            Problem(
                where,
                first + line - 1,
                f"raw LaTeX citation '\\{command}{{{','.join(keys)}}}'",
                f"pandoc's form {pandoc}, which the site links and the export turns into \\citep/\\citet",
                Code.CITATION,
            )
        )
    for line, message in our_work_claims(scanned.prose, profile):
        expected = "only what atlas.yml's our_work profile states, or a hedged 'if'/'whether' sentence"
        out.append(Problem(where, first + line - 1, message, expected, Code.CLAIM))
    for line in scanned.stray_dollars:
        out.append(
            Problem(
                where,
                first + line - 1,
                "a '$' that opens no math",
                "math as $x$ or $$x$$, or a literal dollar written \\$",
                Code.MATH,
            )
        )
    for span in scanned.math:
        if md.unbalanced_braces(span.tex):
            out.append(
                Problem(
                    where,
                    first + span.line - 1,
                    f"unbalanced braces in math '{span.tex[:40]}'",
                    "every '{' closed by a '}' inside the math",
                    Code.MATH,
                )
            )
    # prose only: a Markdown table of measurements (a benchmark's rows) is data, not words to read;
    # the In brief paragraph is the catalogue's, held to its own range below
    brief = next(((line, content) for t, line, content in found if t == BRIEF), None)
    prose = scanned.prose
    if brief is not None:
        prose = prose.replace(md.scan(brief[1]).prose, "", 1)
        out += _check_brief(note, first + brief[0], brief[1])
    words = md.word_count(re.sub(r"(?m)^\s*\|.*$", "", prose))
    if not MIN_WORDS <= words <= MAX_WORDS:
        out.append(
            Problem(
                where,
                first,
                f"the body has {words} words",
                f"{MIN_WORDS} to {MAX_WORDS} words (aim for 250 to 700)",
                Code.SECTION,
            )
        )
    return out


def check_aliases(note: Note) -> list[Problem]:
    """Aliases are other names of the mechanism: each non-empty, one line, said once, not the short name."""
    out: list[Problem] = []
    seen = {note.meta.short.casefold(): "the short name"}
    expected = "other names a reader searches the mechanism by, each once, not the short name"
    for i, alias in enumerate(note.meta.aliases):
        line = note.key_lines.get(("aliases", i)) or note.key_lines.get("aliases", 2)
        folded = " ".join(alias.split()).casefold()
        if not folded or alias != alias.strip() or "\n" in alias or len(alias) > 80:
            out.append(
                Problem(
                    note.where,
                    line,
                    f"alias {alias!r} is empty, padded, multi-line or over 80 characters",
                    expected,
                    Code.ALIAS,
                )
            )
        elif folded in seen:
            out.append(Problem(note.where, line, f"alias '{alias}' repeats {seen[folded]}", expected, Code.ALIAS))
        else:
            seen[folded] = f"the alias '{alias}'"
    return out


# ---------------------------------------------------------------------------------------------
# resolve: against the bib and the repository


def _imports(path: Path) -> frozenset[str]:
    try:
        return _imported_names(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, OSError):
        return frozenset()


@functools.lru_cache(maxsize=1024)
def _imported_names(text: str) -> frozenset[str]:
    """Modules and names a source imports, anywhere in it (kept by its text: several notes share a test file)."""
    tree = parse_python(text)
    if tree is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return frozenset(found)


def _module_dirs(root: Path) -> list[Path]:
    """Where reference_impls modules are found: the root's folder, else the installed package (not imported)."""
    dirs = [root / "reference_impls"]
    try:
        spec = importlib.util.find_spec("reference_impls")
    except (ImportError, ValueError):
        spec = None
    return dirs + [Path(p) for p in (spec.submodule_search_locations or [])] if spec else dirs


def check_references(note: Note, entries: dict[str, BibEntry], root: Path) -> list[Problem]:
    """The note's key, lineage, citations, tests and notebook against the bib and the repository."""
    out: list[Problem] = []
    where, m, kl = note.where, note.meta, note.key_lines
    if m.key and note.path.stem != m.key:
        out.append(
            Problem(
                where,
                kl.get("key", 2),
                f"key '{m.key}' differs from the file name '{note.path.name}'",
                f"the file papers/{m.key}.md",
                Code.NOTE_KEY,
            )
        )
    if m.key and m.key not in entries and note.path.stem == m.key:  # a key unlike its file name is said once, above
        out.append(
            Problem(
                where,
                kl.get("key", 2),
                f"key '{m.key}' is not in {BIB}",
                "a note for a paper of the bib",
                Code.NOTE_KEY,
            )
        )
    for k in m.builds_on:
        line = kl.get("builds_on", 2)
        if k not in entries:
            out.append(
                Problem(
                    where,
                    line,
                    f"builds_on '{k}' is not a key of {BIB}",
                    "keys of earlier papers of the survey",
                    Code.LINEAGE,
                )
            )
        elif k == m.key:
            out.append(
                Problem(
                    where, line, "a paper cannot build on itself", "keys of earlier papers of the survey", Code.LINEAGE
                )
            )
    for key, line in md.citations(md.scan(note.body).prose):
        if key not in entries:
            out.append(
                Problem(
                    where,
                    note.body_line + line - 1,
                    f"citation '@{key}' is not a key of {BIB}",
                    CITE_EXPECTED,
                    Code.CITATION,
                )
            )
    # the modules the note claims that exist (found by file, not imported): a test file must import one
    claimed = {
        f"reference_impls.{mod}" for mod in note.modules if any((d / f"{mod}.py").is_file() for d in _module_dirs(root))
    }
    for t in m.tests:
        path, line = root / t, kl.get("tests", 2)
        if not path.is_file():
            out.append(
                Problem(
                    where,
                    line,
                    f"test file '{t}' does not exist",
                    "a path like tests/reference_impls/test_<mechanism>.py",
                    Code.TESTS,
                )
            )
        elif claimed and not claimed & _imports(path):
            out.append(
                Problem(
                    where,
                    line,
                    f"test file '{t}' imports none of {', '.join(sorted(claimed))}",
                    "each test file to import the module it tests",
                    Code.TESTS,
                )
            )
    if m.notebook and not (root / m.notebook).is_file():
        out.append(
            Problem(
                where,
                kl.get("notebook", 2),
                f"notebook '{m.notebook}' does not exist",
                "a jupytext file under docs/notebooks/",
                Code.NOTEBOOK,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# import: the check only


def _import(dotted: str) -> tuple[Any, str | None]:
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


def check_imports(note: Note) -> list[Problem]:
    out = []
    line = note.key_lines.get("implementation", 2)
    for dotted in note.meta.implementation:
        module, error = _import(dotted)
        if error:
            out.append(
                Problem(
                    note.where,
                    line,
                    f"implementation '{dotted}' does not import ({error})",
                    "a dotted path to a module, class or function inside reference_impls",
                    Code.IMPLEMENTATION,
                )
            )
        elif f"papers/{note.path.stem}.md" not in (module.__doc__ or ""):
            out.append(
                Problem(
                    note.where,
                    line,
                    f"{module.__name__}'s docstring does not link back to papers/{note.path.stem}.md",
                    "the module docstring to name the note path",
                    Code.IMPLEMENTATION,
                )
            )
    return out
