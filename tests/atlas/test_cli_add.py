"""`atlas add` and `atlas bib fmt PATH`: references from BibTeX, Google Scholar or Zotero reach the bib
in its normal form, a scaffolded note is pending (not a wall of errors), a duplicate changes nothing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from atlas.bib import format_bib, parse_bib
from atlas.cli import app
from atlas.loader import load

ZOTERO = (Path(__file__).resolve().parents[1] / "fixtures" / "zotero.bib").read_text(encoding="utf-8")
runner = CliRunner()


def invoke(*args: str, stdin: str | None = None):
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_add_appends_normal_form_entries_scaffolds_notes_and_names_dropped_fields(good_kb: Path, tmp_path: Path):
    source = tmp_path / "zotero.bib"
    source.write_text(ZOTERO, encoding="utf-8")
    before = (good_kb / "bib/references.bib").read_text(encoding="utf-8")
    result = invoke("add", str(source), "--root", str(good_kb))
    assert result.exit_code == 0, result.output
    assert "sun2024autoregressive: dropped abstract, file, keywords, urldate" in result.output
    assert "wrote papers/muller2024uber.md" in result.output
    assert "atlas test sun2024autoregressive muller2024uber" in result.output  # what to do next
    bib = (good_kb / "bib/references.bib").read_text(encoding="utf-8")
    assert bib.startswith(before.rstrip("\n"))  # appended; the existing entries unchanged
    assert bib.isascii() and format_bib(bib) == bib  # in normal form, accents as escapes
    entries, problems = parse_bib(bib, "bib/references.bib")
    assert problems == [] and list(entries)[-2:] == ["sun2024autoregressive", "muller2024uber"]
    assert entries["sun2024autoregressive"].get("month") == "jun"
    assert (good_kb / "papers/sun2024autoregressive.md").read_text().startswith("---\nkey: sun2024autoregressive\n")


def test_a_scaffolded_note_is_pending_with_what_it_lacks_and_an_error_only_with_strict(good_kb: Path):
    invoke("add", "-", "--root", str(good_kb), stdin=ZOTERO)
    result = invoke("check", "--root", str(good_kb))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (
        "pending: papers/muller2024uber.md is a draft; still missing short, group, modality, latent, prior, "
        "conditioning, implementation, tests, the sections Summary, In brief, Method, Similarity to our work, "
        "Difference from our work, Implementation"
    ) in lines
    assert lines[-1].endswith("sun2024autoregressive (draft), muller2024uber (draft)")
    strict = invoke("check", "--strict", "--root", str(good_kb))
    assert strict.exit_code == 1
    assert "papers/sun2024autoregressive.md:1: draft note, still missing short, group" in strict.output


def test_a_draft_lists_only_what_is_unset_and_what_it_sets_is_checked(good_kb: Path):
    invoke("add", "-", "--root", str(good_kb), "--no-note", stdin=ZOTERO)
    survey, _ = load(good_kb, deep=False)
    from atlas.importer import scaffold_note

    note = good_kb / "papers/sun2024autoregressive.md"
    text = scaffold_note("sun2024autoregressive", survey.config)
    note.write_text(text.replace("short:  ", "short: LlamaGen  ").replace("group:  ", "group: autoregressive-priors  "))
    survey, problems = load(good_kb, deep=False)
    assert problems == []
    assert survey.drafts["sun2024autoregressive"][:2] == ["modality", "latent"]
    note.write_text(note.read_text().replace("prior:  ", "prior: autoregresive  "))
    _, problems = load(good_kb, deep=False)
    assert [p.message for p in problems] == [
        "unknown prior 'autoregresive'"
    ]  # a value that is set is held to the vocabulary
    note.write_text(note.read_text().replace("## Summary\n", "## Summary\nLlamaGen is a plain language model.\n"))
    _, problems = load(good_kb, deep=False)  # prose started: no longer a draft, every rule applies
    assert any("section '## Method' is empty" in p.message for p in problems)


def test_a_duplicate_by_key_or_title_is_refused_and_nothing_is_written(good_kb: Path, tmp_path: Path):
    by_title = "@misc{vqvae2017, title = {Neural discrete representation {L}earning}, author = {A, B}, year = {2017}}\n"
    before = snapshot(good_kb)
    result = invoke("add", "-", "--root", str(good_kb), stdin=ZOTERO + by_title)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "stdin:20: entry 'vqvae2017' has the title of 'oord2017neural' (line 1); one entry per paper; keep the "
        "existing key"
    ]
    first = tmp_path / "a.bib"
    first.write_text(ZOTERO)
    again = invoke("add", str(first), str(first), "--root", str(good_kb))
    assert again.exit_code == 1
    assert f"{first}:1: entry 'sun2024autoregressive' is also in {first} (line 1); one entry per paper" in again.output
    assert snapshot(good_kb) == before


def test_an_entry_the_check_would_reject_is_refused_with_its_source_line(good_kb: Path):
    result = invoke("add", "-", "--root", str(good_kb), stdin="\n@misc{noyear2020, title = {T}, author = {A, B}}\n")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "stdin:2: entry 'noyear2020' (@misc) lacks the required field 'year'; required: author, title, year"
    ]
    assert not (good_kb / "papers/noyear2020.md").exists()


def test_empty_input_says_no_entry_was_found(good_kb: Path):
    result = invoke("add", "-", "--root", str(good_kb), stdin="% nothing here\n")
    assert result.exit_code == 1
    assert result.output.startswith("stdin:1: no BibTeX entry found;")


def test_bib_fmt_formats_any_file_converting_accents_and_months(tmp_path: Path):
    scholar = tmp_path / "scholar.bib"
    scholar.write_text(
        "@string{nips = {NeurIPS}}\n@inproceedings{a2020, title={Über Tokens}, author={Défossez, A.}, "
        "booktitle=nips, year={2020}, month={June}}\n",
        encoding="utf-8",
    )
    check = invoke("bib", "fmt", "--check", str(scholar))
    assert check.exit_code == 1 and check.output.startswith(f"{scholar}:")
    result = invoke("bib", "fmt", str(scholar))
    assert result.exit_code == 0, result.output
    text = scholar.read_text()
    assert "author    = {D{\\'e}fossez, A.}" in text and 'title     = {{\\"U}ber Tokens}' in text
    assert "booktitle = {NeurIPS}" in text  # the @string abbreviation written out, its meaning kept
    assert "month     = jun\n" in text
    assert parse_bib(text, "x")[1] == []
    assert invoke("bib", "fmt", "--check", str(scholar)).exit_code == 0


def test_bib_fmt_names_a_character_it_cannot_convert(tmp_path: Path):
    path = tmp_path / "cjk.bib"
    path.write_text("@misc{b2021, title={東京 Tokens}, author={A, B}, year={2021}}\n", encoding="utf-8")
    result = invoke("bib", "fmt", str(path))
    assert result.exit_code == 1
    assert f"{path}:2: non-ASCII character '東' (U+6771); no LaTeX escape is known for it: write one by hand" in (
        result.output
    )
