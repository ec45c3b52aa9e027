"""The check command: a good knowledge base passes; each bad one fails with one exact line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli import app

NOTE = "papers/oord2017neural.md"
BIB = "bib/references.bib"
runner = CliRunner()


def run_check(root: Path, *extra: str):
    result = runner.invoke(app, ["check", "--root", str(root), *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_good_knowledge_base_passes_with_a_summary_naming_pending_papers(good_kb: Path):
    result = run_check(good_kb)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "atlas check: ok: 2 papers in the bib, 1 notes complete, 1 modules, 1 test files, "
        "1 pending: razavi2019generating"
    )


def test_strict_makes_a_pending_paper_an_error(good_kb: Path):
    result = run_check(good_kb, "--strict")
    assert result.exit_code == 1
    assert f"{BIB}:10: paper 'razavi2019generating' has no note; papers/razavi2019generating.md" in result.output


# (name, file, old text, new text, the one expected line)
BAD = [
    (
        "bib_does_not_parse",
        BIB,
        "  archivePrefix = {arXiv}\n}\n\n@inproceedings{razavi",
        "  archivePrefix = {arXiv}\n}\n\n@misc{broken, title = {A {B}\n\n@inproceedings{razavi",
        f"{BIB}:10: entry 'broken' has a '{{' still open when the next entry starts (line 12); "
        "@type{key, field = {value}, ...}: a comma after the key, every { closed",
    ),
    (
        "bib_no_comma_after_the_key",
        BIB,
        "@inproceedings{razavi2019generating,",
        "@inproceedings{razavi2019generating",
        f"{BIB}:10: entry 'razavi2019generating' has no comma after its key; @type{{key, field",
    ),
    (
        "bib_braces_never_close_before_the_next_entry",
        BIB,
        "  archivePrefix = {arXiv}\n}\n\n@inproceedings{razavi",
        "  archivePrefix = {arXiv}\n\n\n@inproceedings{razavi",
        f"{BIB}:1: entry 'oord2017neural' has a '{{' still open when the next entry starts (line 10)",
    ),
    (
        "note_key_differs_from_its_file_name",
        NOTE,
        "key: oord2017neural",
        "key: oord2017nevral",
        f"{NOTE}:2: key 'oord2017nevral' differs from the file name 'oord2017neural.md'",
    ),
    (
        "bib_duplicate_key",
        BIB,
        "@inproceedings{razavi2019generating,",
        "@misc{oord2017neural, title = {A Copy}, author = {Nobody, A.}, year = "
        "{2017}}\n\n@inproceedings{razavi2019generating,",
        f"{BIB}:10: duplicate key 'oord2017neural' (first at line 1); each key once",
    ),
    (
        "bib_duplicate_title_folded",
        BIB,
        "{Generating Diverse High-Fidelity Images with {VQ-VAE-2}}",
        "{neural discrete-representation LEARNING.}",
        f"{BIB}:11: duplicate title: 'razavi2019generating' has the title of 'oord2017neural' (line 1); one entry "
        f"per paper",
    ),
    (
        "bib_required_field",
        BIB,
        "  booktitle     = {Advances in Neural Information Processing Systems (NeurIPS)},\n",
        "",
        f"{BIB}:10: entry 'razavi2019generating' (@inproceedings) lacks the required field 'booktitle'; required: "
        f"author, title, booktitle, year",
    ),
    (
        "bib_arxiv_format",
        BIB,
        "{1906.00446}",
        "{arXiv:1906.446}",
        f"{BIB}:15: entry 'razavi2019generating' has arXiv id 'arXiv:1906.446'; an id like 2112.10752 (YYMM.NNNNN, "
        f"optional vN) or hep-th/9901001",
    ),
    (
        "bib_year_range",
        BIB,
        "{2019}",
        "{1819}",
        f"{BIB}:14: entry 'razavi2019generating' has year '1819'; a four-digit year from 1900 to",
    ),
    (
        "bib_non_ascii",
        BIB,
        'A{\\"a}ron',
        "Aäron",
        f"{BIB}:12: non-ASCII character 'ä' (U+00E4); write the LaTeX escape {{\\\"a}}",
    ),
    (
        "note_key_differs_from_file_name",
        NOTE,
        "key: oord2017neural",
        "key: razavi2019generating",
        f"{NOTE}:2: key 'razavi2019generating' differs from the file name 'oord2017neural.md'; the file "
        f"papers/razavi2019generating.md",
    ),
    (
        "note_yaml_syntax",
        NOTE,
        "modality: [image]",
        "modality: [image",
        f"{NOTE}:5: YAML syntax error: expected ',' or ']', but got ':'; valid YAML (key: value, lists as [a, b])",
    ),
    (
        "note_unknown_front_matter_key",
        NOTE,
        "short: VQ-VAE\n",
        "short: VQ-VAE\nvenue: NIPS\n",
        f"{NOTE}:4: unknown key 'venue'; expected one of: key, short, group, modality, latent, prior, conditioning, "
        f"builds_on, implementation, tests, notebook",
    ),
    (
        "note_value_outside_vocabulary",
        NOTE,
        "prior: autoregressive",
        "prior: autoregresive",
        f"{NOTE}:7: unknown prior 'autoregresive'; expected one of: autoregressive, masked-parallel, "
        f"diffusion-discrete, diffusion-continuous, gan, other",
    ),
    (
        "note_list_item_outside_vocabulary",
        NOTE,
        "modality: [image]",
        "modality: [image, smell]",
        f"{NOTE}:5: unknown modality 'smell'; expected one of: image, video, audio, music, 3d, science, general",
    ),
    (
        "note_missing_key",
        NOTE,
        "latent: vq\n",
        "",
        f"{NOTE}:1: missing key 'latent'; every required key: key, short, group, modality, latent, prior, "
        f"conditioning, builds_on, implementation, tests, notebook",
    ),
    (
        "note_builds_on_unknown",
        NOTE,
        "builds_on: []",
        "builds_on: [oord2016pixel]",
        f"{NOTE}:9: builds_on 'oord2016pixel' is not a key of {BIB}; keys of earlier papers of the survey",
    ),
    (
        "note_citation_unknown",
        NOTE,
        "A later paper [@razavi2019generating]",
        "A later paper [@razavi2019generate]",
        f"{NOTE}:26: citation '@razavi2019generate' is not a key of {BIB}; [@key] or @key with a key of the bib "
        f"(write \\@ for a literal at sign)",
    ),
    (
        "note_textual_citation_unknown",
        NOTE,
        "@razavi2019generating also",
        "@razavi2020generating also",
        f"{NOTE}:27: citation '@razavi2020generating' is not a key of {BIB}; [@key] or @key with a key of the bib "
        f"(write \\@ for a literal at sign)",
    ),
    (
        "note_implementation_does_not_import",
        NOTE,
        "[reference_impls.vq]",
        "[reference_impls.vq_missing]",
        f"{NOTE}:10: implementation 'reference_impls.vq_missing' does not import (no such module); a dotted path to "
        f"a module, class or function inside reference_impls",
    ),
    (
        "note_implementation_missing_attribute",
        NOTE,
        "[reference_impls.vq]",
        "[reference_impls.vq.Quantiser]",
        f"{NOTE}:10: implementation 'reference_impls.vq.Quantiser' does not import (reference_impls.vq has no "
        f"attribute 'Quantiser'); a dotted path to a module, class or function inside reference_impls",
    ),
    (
        "note_implementation_outside_reference_impls",
        NOTE,
        "[reference_impls.vq]",
        "[torch.nn]",
        f"{NOTE}:10: implementation 'torch.nn' is not a dotted path inside reference_impls; expected e.g. "
        f"reference_impls.vq or reference_impls.vq.VectorQuantizer",
    ),
    (
        "note_module_does_not_link_back",
        NOTE,
        "[reference_impls.vq]",
        "[reference_impls.vq, reference_impls.guidance]",
        f"{NOTE}:10: reference_impls.guidance's docstring does not link back to papers/oord2017neural.md; the module "
        f"docstring to name the note path",
    ),
    (
        "note_test_path_missing",
        NOTE,
        "[tests/check_vq.py]",
        "[tests/test_vq.py]",
        f"{NOTE}:11: test file 'tests/test_vq.py' does not exist; a path like "
        f"tests/reference_impls/test_<mechanism>.py",
    ),
    (
        "note_test_file_imports_another_module",
        "tests/check_vq.py",
        "from reference_impls.vq import",
        "from reference_impls.guidance import",
        f"{NOTE}:11: test file 'tests/check_vq.py' imports none of reference_impls.vq; each test file to import the "
        f"module it tests",
    ),
    (
        "note_notebook_missing",
        NOTE,
        "tests: [tests/check_vq.py]\n",
        "tests: [tests/check_vq.py]\nnotebook: docs/notebooks/vq.py\n",
        f"{NOTE}:12: notebook 'docs/notebooks/vq.py' does not exist; a jupytext file under docs/notebooks/",
    ),
    (
        "note_missing_section",
        NOTE,
        "## Difference from our work\n",
        "## Differences\n",
        f"{NOTE}:13: missing section '## Difference from our work'; the sections '## Summary', '## In brief', "
        "'## Method', '## Similarity to our work', '## Difference from our work', '## Implementation'",
    ),
    (
        "note_stray_dollar",
        NOTE,
        "Prices such as \\$5",
        "Prices such as $5",
        f"{NOTE}:27: a '$' that opens no math; math as $x$ or $$x$$, or a literal dollar written \\$",
    ),
    (
        "note_unbalanced_braces_in_math",
        NOTE,
        "$z_e$ is mapped",
        "$z_{e$ is mapped",
        f"{NOTE}:20: unbalanced braces in math 'z_{{e'; every '{{' closed by a '}}' inside the math",
    ),
    (
        "note_raw_latex_citation",
        NOTE,
        "A later paper [@razavi2019generating]",
        "A later paper \\citep{razavi2019generating, oord2017neural}",
        f"{NOTE}:26: raw LaTeX citation '\\citep{{razavi2019generating,oord2017neural}}'; "
        "pandoc's form [@razavi2019generating; @oord2017neural]",
    ),
    (
        "note_no_front_matter",
        NOTE,
        "---\nkey:",
        "key:",
        f"{NOTE}:1: no front matter; the note to start with a '---' line, the facets in YAML, and a closing '---' line",
    ),
]


@pytest.mark.parametrize("name,rel,old,new,expected", BAD, ids=[b[0] for b in BAD])
def test_each_bad_knowledge_base_fails_with_one_exact_line(good_kb: Path, name, rel, old, new, expected):
    edit(good_kb, rel, old, new)
    result = run_check(good_kb)
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if not ln.startswith("atlas check:")]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(expected), f"\n got: {lines[0]}\nwant: {expected}"


def test_binary_file_in_papers_is_reported_not_crashed_on(good_kb: Path):
    (good_kb / "papers" / "figure.md").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    result = run_check(good_kb)
    assert result.exit_code == 1
    assert "papers/figure.md:1: binary file (it contains NUL bytes); a UTF-8 text file" in result.output


def test_non_utf8_note_is_reported_with_its_line(good_kb: Path):
    (good_kb / "papers" / "latin1.md").write_bytes(b"---\nkey: x\n---\ncaf\xe9\n")
    result = run_check(good_kb)
    assert "papers/latin1.md:4: not UTF-8 (byte 0xe9); a UTF-8 text file" in result.output


def test_non_note_file_in_papers_is_reported(good_kb: Path):
    (good_kb / "papers" / "notes.txt").write_text("hello\n")
    assert "papers/notes.txt:1: not a note; papers/ to hold only notes named <bibkey>.md" in run_check(good_kb).output


def test_a_folder_named_like_a_note_is_reported(good_kb: Path):
    (good_kb / "papers" / "razavi2019generating.md").mkdir()
    assert (
        "papers/razavi2019generating.md:1: a folder, not a note; papers/ to hold only notes"
        in run_check(good_kb).output
    )


def test_windows_line_ends_and_a_byte_order_mark_read_as_the_same_note(good_kb: Path):
    path = good_kb / NOTE
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    result = run_check(good_kb)
    assert result.exit_code == 0, result.output


def test_every_problem_is_reported_at_once(good_kb: Path):
    edit(good_kb, NOTE, "prior: autoregressive", "prior: autoregresive")
    edit(good_kb, NOTE, "builds_on: []", "builds_on: [nobody2020]")
    edit(good_kb, BIB, "{2019}", "{1819}")
    result = run_check(good_kb)
    lines = [ln for ln in result.output.splitlines() if not ln.startswith("atlas check:")]
    assert len(lines) == 3, result.output


def test_the_command_line_exits_1_without_a_traceback(good_kb: Path):
    edit(good_kb, NOTE, "prior: autoregressive", "prior: autoregresive")
    (good_kb / "papers" / "figure.md").write_bytes(b"\0\1\2")
    proc = subprocess.run(
        [sys.executable, "-m", "atlas", "check", "--root", str(good_kb)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{NOTE}:7: unknown prior 'autoregresive'" in proc.stdout


def test_the_repository_passes_its_own_check():
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "atlas", "check", "--root", str(repo)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert re.search(r"\b\d+ papers in the bib", proc.stdout)


def test_unreadable_note_is_reported_not_crashed_on(good_kb: Path):
    (good_kb / "papers" / "dangling.md").symlink_to(good_kb / "papers" / "missing-target.md")
    result = run_check(good_kb)
    assert result.exit_code == 1
    assert (
        "papers/dangling.md:1: cannot read the file (No such file or directory); a readable UTF-8 text file"
        in result.output
    )
