"""`atlas test`: the tests of some papers, chosen by key or by what changed since the last commit.

A paper's tests are the test files its note lists and, when it has one, its notebook's nbval run.
With no key, the papers are those whose note, module, test file or notebook differs from HEAD
(staged, unstaged or untracked), so `atlas test` after an edit runs just what the edit can break.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from atlas.model import Survey
from atlas.problems import Problem

NOTEBOOK_TEST = "tests/notebooks/test_notebooks.py::test_notebook_runs_under_nbval"


@dataclass
class Selection:
    keys: list[str] = field(default_factory=list)
    test_files: list[str] = field(default_factory=list)
    notebooks: list[str] = field(default_factory=list)  # notebook stems

    def pytest_args(self) -> list[str]:
        """Node ids for pytest: the test files, then one nbval run per notebook."""
        return self.test_files + [f"{NOTEBOOK_TEST}[{stem}]" for stem in self.notebooks]


def changed_files(root: Path) -> list[str] | None:
    """Paths (relative to root) that differ from HEAD or are untracked; None outside a git checkout."""
    try:
        diff = subprocess.run(
            ["git", "diff", "--name-only", "HEAD", "--", "."], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        new = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "--", "."],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    top = subprocess.run(["git", "rev-parse", "--show-prefix"], cwd=root, capture_output=True, text=True).stdout.strip()
    paths = [p for p in diff.splitlines() if p]
    paths = [p.removeprefix(top) for p in paths] + [p for p in new.splitlines() if p]
    return sorted(set(paths))


def touched_by(survey: Survey, paths: list[str]) -> dict[str, list[str]]:
    """Key -> the changed paths among its note, implementation modules, test files and notebook."""
    touched = set(paths)
    out = {}
    for key, note in survey.notes.items():
        m = note.meta
        modules = {"reference_impls/" + d.split(".")[1] + ".py" for d in m.implementation}
        files = {f"papers/{key}.md", *modules, *m.tests} | ({m.notebook} if m.notebook else set())
        if files & touched:
            out[key] = sorted(files & touched)
    return out


def papers_touched(survey: Survey, paths: list[str]) -> list[str]:
    """Keys whose note, implementation module, test file or notebook is among paths."""
    return list(touched_by(survey, paths))


def select(survey: Survey, keys: list[str]) -> tuple[Selection, list[Problem]]:
    """The tests of the named papers; an unknown key is a problem naming what exists."""
    problems = []
    out = Selection()
    for key in keys:
        note = survey.notes.get(key)
        if note is None and key in survey.drafts:
            problems.append(
                Problem(
                    f"papers/{key}.md",
                    1,
                    f"paper '{key}' is a draft note (still missing {', '.join(survey.drafts[key])})",
                    "a note with its tests listed under tests:; `atlas check` tells what is missing",
                )
            )
            continue
        if note is None:
            what = "has no note yet" if key in survey.entries else "is not a key of the bib"
            problems.append(
                Problem(
                    "papers",
                    1,
                    f"paper '{key}' {what}",
                    "a key with a note: " + ", ".join(k for k in list(survey.notes)[:5]) + ", ...",
                )
            )
            continue
        out.keys.append(key)
        out.test_files += [t for t in note.meta.tests if t not in out.test_files]
        if note.meta.notebook:
            stem = Path(note.meta.notebook).stem
            if stem not in out.notebooks:
                out.notebooks.append(stem)
    return out, problems
