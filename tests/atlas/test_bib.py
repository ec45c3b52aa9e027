"""The bib formatter and the loaded model's view of entries."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from atlas.bib import format_bib, parse_bib
from atlas.cli import app
from atlas.loader import load

REPO = Path(__file__).resolve().parents[2]
MESSY = """@InProceedings{b2020x,
author={Lee, A. and M{\\"u}ller, B.},
    title = "A {GAN}   for
   Sound",
  year = 2020, booktitle={Proc. X},
}
"""


def test_format_is_idempotent_and_orders_fields():
    once = format_bib(MESSY)
    assert format_bib(once) == once
    lines = once.splitlines()
    assert lines[0] == "@inproceedings{b2020x,"
    assert [ln.split("=")[0].strip() for ln in lines[1:-1]] == ["title", "author", "booktitle", "year"]
    assert "  title     = {A {GAN} for Sound}," in lines


def test_repository_bib_is_in_normal_form():
    text = (REPO / "bib" / "references.bib").read_text(encoding="utf-8")
    assert format_bib(text) == text


def test_fmt_check_fails_on_a_messy_bib_and_fmt_fixes_it(good_kb: Path):
    bib = good_kb / "bib" / "references.bib"
    bib.write_text(MESSY)
    runner = CliRunner()
    result = runner.invoke(app, ["bib", "fmt", "--check", "--root", str(good_kb)])
    assert result.exit_code == 1
    assert "bib/references.bib:1: not in the normal form; run `atlas bib fmt`" in result.output
    assert bib.read_text() == MESSY  # --check changes nothing
    assert runner.invoke(app, ["bib", "fmt", "--root", str(good_kb)]).exit_code == 0
    second = bib.read_text()
    assert runner.invoke(app, ["bib", "fmt", "--root", str(good_kb)]).exit_code == 0
    assert bib.read_text() == second
    assert runner.invoke(app, ["bib", "fmt", "--check", "--root", str(good_kb)]).exit_code == 0


def test_entries_decode_latex_for_display():
    entries, problems = parse_bib(MESSY, "x.bib")
    assert problems == []
    e = entries["b2020x"]
    assert e.authors == ["A. Lee", "B. Müller"]
    assert e.author_short == "Lee and Müller"
    assert e.title == "A GAN for Sound"


def test_survey_joins_bib_notes_lineage_and_our_work(good_kb: Path):
    survey, problems = load(good_kb)
    assert problems == []
    assert list(survey.notes) == ["oord2017neural"]
    assert survey.pending == ["razavi2019generating"]
    note = survey.notes["oord2017neural"]
    assert survey.entries["oord2017neural"].author_short == "van den Oord et al."
    by_facet = {c.facet: c for c in survey.compare(note)}
    assert by_facet["latent"].shared and by_facet["prior"].shared
    assert set(note.sections) >= {"Summary", "Method", "Implementation"}
