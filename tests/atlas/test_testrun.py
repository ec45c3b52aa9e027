"""`atlas test` picks the tests of the named papers, or of the papers whose files changed."""

from __future__ import annotations

import subprocess

from atlas.loader import load
from atlas.testrun import NOTEBOOK_TEST, changed_files, papers_touched, select


def test_a_paper_selects_its_test_files_and_its_notebook(good_kb):
    survey, _ = load(good_kb, deep=False)
    note = survey.notes["oord2017neural"]
    note.meta.notebook = "docs/notebooks/codebook_collapse.py"
    selection, problems = select(survey, ["oord2017neural"])
    assert not problems
    assert selection.pytest_args() == [*note.meta.tests, f"{NOTEBOOK_TEST}[codebook_collapse]"]


def test_an_unknown_or_pending_key_is_a_problem(good_kb):
    survey, _ = load(good_kb, deep=False)
    _, problems = select(survey, ["nobody2099"])
    assert "paper 'nobody2099' is not a key of the bib" in str(problems[0])


def test_changed_files_map_back_to_their_papers(good_kb):
    survey, _ = load(good_kb, deep=False)
    subprocess.run(["git", "init", "-q"], cwd=good_kb, check=True)
    subprocess.run(["git", "add", "-A"], cwd=good_kb, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=good_kb, check=True)
    assert changed_files(good_kb) == []
    assert papers_touched(survey, []) == []
    test_file = survey.notes["oord2017neural"].meta.tests[0]
    (good_kb / test_file).write_text((good_kb / test_file).read_text() + "\n# edited\n")
    assert changed_files(good_kb) == [test_file]
    assert papers_touched(survey, changed_files(good_kb)) == ["oord2017neural"]
    assert papers_touched(survey, ["reference_impls/vq.py"]) == ["oord2017neural"]
