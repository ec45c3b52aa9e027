"""Importing BibTeX from Google Scholar, arXiv or Zotero (Better BibTeX) into the bib's normal form."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.bib import format_entries, parse_bib
from atlas.importer import month_macro, normalise, scaffold_note
from atlas.loader import load

EXISTING = """@inproceedings{oord2017neural,
  title     = {Neural Discrete Representation Learning},
  author    = {van den Oord, Aaron and Vinyals, Oriol and Kavukcuoglu, Koray},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2017}
}
"""

ZOTERO = (Path(__file__).resolve().parents[1] / "fixtures" / "zotero.bib").read_text(encoding="utf-8")


@pytest.fixture
def existing():
    entries, problems = parse_bib(EXISTING, "bib/references.bib")
    assert not problems
    return entries


def test_zotero_fields_the_survey_does_not_keep_are_dropped_and_listed(existing):
    result = normalise(ZOTERO, "zotero.bib", existing)
    assert not result.problems
    assert result.dropped["sun2024autoregressive"] == ["abstract", "file", "keywords", "urldate"]
    fields = dict(result.entries[0][2])
    assert fields["eprint"] == "2406.06525" and fields["archivePrefix"] == "arXiv"  # taken from the arXiv url


def test_month_stays_a_bare_macro_so_styles_print_its_name(existing):
    text = format_entries(normalise(ZOTERO, "zotero.bib", existing).entries)
    assert "month         = jun,\n" in text
    assert "month         = mar,\n" in text  # from biblatex's date = {2024-03-05}
    assert "{jun}" not in text
    reparsed, problems = parse_bib(text, "new.bib")
    assert not problems and reparsed["sun2024autoregressive"].get("month") == "jun"


def test_accented_names_become_the_escapes_the_check_asks_for(existing):
    result = normalise(ZOTERO, "zotero.bib", existing)
    _, key, fields = result.entries[1]
    assert fields["author"] == r"M{\"u}ller, J{\"u}rgen and D{\'e}fossez, Alexandre"
    assert fields["title"] == r"{\"U}ber Tokenizer f{\"u}r {VQ-VAE} Bilder"  # acronym braced for BibTeX
    text = format_entries(result.entries)
    assert text.isascii()
    _, problems = parse_bib(text, "new.bib")
    assert problems == []  # the check accepts the normal form: ASCII, known types, valid year


def test_biblatex_names_become_bibtex_ones(existing):
    entry_type, _, fields = normalise(ZOTERO, "zotero.bib", existing).entries[1]
    assert entry_type == "misc" and fields["year"] == "2024" and fields["archivePrefix"] == "arXiv"


def test_a_paper_already_in_the_bib_is_refused_by_key_or_title_naming_the_entry(existing):
    by_key = "@article{oord2017neural, title = {Something Else}, author = {A, B}, journal = {J}, year = {2017}}"
    by_title = "@misc{vqvae, title = {Neural discrete representation {L}earning}, author = {A, B}, year = {2018}}"
    (p1,) = normalise(by_key, "in.bib", existing).problems
    (p2,) = normalise(by_title, "in.bib", existing).problems
    assert str(p1).startswith("in.bib:1: entry 'oord2017neural' is already in the bib (line 1)")
    assert str(p2).startswith("in.bib:1: entry 'vqvae' has the title of 'oord2017neural' (line 1)")


def test_a_broken_entry_is_reported_with_its_line(existing):
    result = normalise(
        "@article{ok, title={T}, author={A, B}, journal={J}, year={2020}}\n\n@article{bad, title={T\n",
        "in.bib",
        existing,
    )
    assert [str(p).split(";")[0] for p in result.problems] == ["in.bib:3: entry does not parse"]


@pytest.mark.parametrize(
    ("value", "macro"),
    [("June", "jun"), ("jun", "jun"), ("6", "jun"), ("06", "jun"), ("{Sep.}", "sep"), ("Summer", None), ("13", None)],
)
def test_month_macro(value, macro):
    assert month_macro(value) == macro


def test_the_scaffold_has_every_section_and_lists_the_allowed_values(good_kb):
    survey, _ = load(good_kb, deep=False)
    text = scaffold_note("new2024paper", survey.config)
    assert text.startswith("---\nkey: new2024paper\n")
    assert "latent:             # one of: vq, rq, dvae, sq, continuous-kl, none" in text
    for section in ("Summary", "Method", "Similarity to our work", "Difference from our work", "Implementation"):
        assert f"\n## {section}\n" in text
