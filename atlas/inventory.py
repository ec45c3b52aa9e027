"""The repository beside the notes, as the site shows it: reference_impls modules with their
docstring summaries, the test files with their test counts, the notebooks, the question pages,
and the text of every file that gets a source view. Read once by the loader into the Survey."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from atlas.model import Inventory, Member, Module, Note, Question, TestFile

MODULES = "reference_impls"
TESTS = "tests/reference_impls"
NOTEBOOKS = "docs/notebooks"
QUESTIONS = "docs/questions"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _parse(text: str | None) -> ast.Module | None:
    return parse_python(text) if text is not None else None


@functools.lru_cache(maxsize=1024)
def parse_python(text: str) -> ast.Module | None:
    """The syntax tree of a Python source (None when it does not parse), kept by its text: the
    inventory and the check's import test read the same files, and each is parsed once. Read only."""
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def docstring_summary(node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef | None) -> str:
    """The first paragraph of a docstring, on one line ("" when there is none)."""
    doc = ast.get_docstring(node) if node is not None else None
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else ""


def public_members(tree: ast.Module | None) -> tuple[Member, ...]:
    """The classes and functions defined at the module's top level whose names do not start with _."""
    if tree is None:
        return ()
    kinds = {ast.ClassDef: "class", ast.FunctionDef: "function", ast.AsyncFunctionDef: "function"}
    return tuple(
        Member(n.name, kinds[type(n)], docstring_summary(n))
        for n in tree.body
        if type(n) in kinds and not n.name.startswith("_")
    )


def count_tests(tree: ast.Module | None) -> int:
    """The test functions pytest collects: `test*` functions at the top level and in `Test*` classes."""
    if tree is None:
        return 0
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    bodies = [tree.body] + [n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")]
    return sum(isinstance(n, functions) and n.name.startswith("test") for body in bodies for n in body)


def _question_title(path: Path, text: str | None) -> str:
    first = next((ln for ln in (text or "").splitlines() if ln.startswith("# ")), None)
    return first[2:].strip() if first else path.stem.replace("_", " ").replace("-", " ").capitalize()


def read_inventory(root: Path, notes: list[Note]) -> Inventory:
    inv = Inventory()
    for path in sorted((root / MODULES).glob("*.py")):
        if path.stem == "__init__":
            continue
        rel = path.relative_to(root).as_posix()
        text = _read(path)
        tree = _parse(text)
        inv.modules.append(Module(path.stem, rel, docstring_summary(tree), public_members(tree)))
        inv.sources[rel] = text or ""
    for path in sorted((root / TESTS).glob("test_*.py")):
        rel = path.relative_to(root).as_posix()
        text = _read(path)
        inv.test_files.append(TestFile(rel, count_tests(_parse(text))))
        inv.sources[rel] = text or ""
    for path in sorted((root / NOTEBOOKS).glob("*.py")):
        rel = path.relative_to(root).as_posix()
        inv.notebooks.append(rel)
        inv.sources[rel] = _read(path) or ""
    for t in sorted({t for n in notes for t in n.meta.tests} - set(inv.sources)):
        if (root / t).is_file():  # a note's test outside tests/reference_impls (a fixture's)
            inv.sources[t] = _read(root / t) or ""
    qdir = root / QUESTIONS
    for path in sorted(qdir.glob("*.md"), key=lambda p: (p.name != "index.md", p.name)):
        inv.questions.append(Question(_question_title(path, _read(path)), f"questions/{path.name}"))
    return inv
