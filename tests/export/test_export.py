"""The LaTeX export: content, AAAI rules, atomic and repeatable writing, options, and a real compile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from atlas.cli import app
from atlas.export import FILES, FORBIDDEN_COMMANDS, FORBIDDEN_PACKAGES, protect_title
from atlas.loader import load

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
NEED_SYSTEM = os.environ.get("ATLAS_REQUIRE_SYSTEM") == "1"


def export(root: Path, out: Path, *args: str):
    result = runner.invoke(app, ["export", "--root", str(root), "--out", str(out), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def need_latex() -> None:
    if not all(shutil.which(t) for t in ("pdflatex", "bibtex", "pdftotext")):
        if NEED_SYSTEM:
            pytest.fail("pdflatex, bibtex and pdftotext are required (ATLAS_REQUIRE_SYSTEM=1); .ci/run installs them")
        pytest.skip("TeX Live or poppler-utils not installed (bash .ci/run installs them)")


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", text.lower())


def compile_pdf(folder: Path) -> str:
    """pdflatex, bibtex, pdflatex twice; on failure the relevant log lines are in the assertion."""
    steps = [["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], ["bibtex", "main"],
             ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"],
             ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"]]
    for cmd in steps:
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, errors="replace", timeout=120)
        if proc.returncode != 0:
            log = (folder / "main.log").read_text(errors="replace") if (folder / "main.log").exists() else proc.stdout
            lines = [l for l in log.splitlines() if l.startswith("!") or "Error" in l or l.startswith("l.")]
            blg = (folder / "main.blg").read_text(errors="replace") if (folder / "main.blg").exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed:\n" + "\n".join(lines[:20]) + "\n" + blg[-1500:])
    log = (folder / "main.log").read_text(errors="replace")
    blg = (folder / "main.blg").read_text(errors="replace")
    problems = [l for l in log.splitlines() if re.search(r"undefined|Undefined|^! ", l)]
    problems += [l for l in blg.splitlines() if l.startswith(("Warning--", "I was expecting", "I couldn't"))]
    assert not problems, "\n".join(problems[:20])
    return subprocess.run(["pdftotext", "-raw", "main.pdf", "-"], cwd=folder, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("overleaf") / "overleaf"
    result = export(REPO, out)
    assert result.exit_code == 0, result.output
    assert re.search(r"in \d+\.\d\d s", result.output)
    return out


def test_bundle_has_every_file_and_the_zip_holds_them_all(bundle: Path):
    for name in FILES + ("overleaf.zip",):
        assert (bundle / name).is_file(), name
    with zipfile.ZipFile(bundle / "overleaf.zip") as z:
        assert sorted(z.namelist()) == sorted(FILES)
        for name in FILES:
            assert z.read(name) == (bundle / name).read_bytes()


def test_section_has_a_paragraph_per_group_and_cites_every_note(bundle: Path):
    survey, _ = load(REPO, deep=False)
    tex = (bundle / "related-work.tex").read_text()
    assert tex.count("\\section{Related Work}") == 1
    groups_with_notes = [g for g in survey.config.groups if survey.in_group(g.id)]
    assert tex.count("\\paragraph{") == len(groups_with_notes)
    cited = set(re.findall(r"\\cite[tp]\{([^}]+)\}", tex))
    assert set(survey.notes) <= {k for c in cited for k in c.split(",")}
    assert "$" not in re.sub(r"\\\$", "", tex), "math must come out as \\( \\) or \\[ \\], never raw dollars"


def test_references_hold_only_cited_entries_in_ascii_with_protected_acronyms(bundle: Path):
    bib = (bundle / "references.bib").read_bytes()
    bib.decode("ascii")  # raises if any byte is not ASCII
    text = bib.decode()
    keys = set(re.findall(r"@\w+\{([^,]+),", text))
    cited = set()
    for name in ("related-work.tex", "comparison-table.tex"):
        for group in re.findall(r"\\cite[tp]?\{([^}]+)\}", (bundle / name).read_text()):
            cited |= set(group.split(","))
    assert keys == cited
    assert "code " not in text  # site-only field dropped
    if "wu2022nuwa" in keys:
        assert '{N{\\"U}WA}' in text


def test_title_protection_braces_acronyms_and_leaves_plain_words():
    assert protect_title("Generating Images with VQ-VAE-2") == "Generating Images with {VQ-VAE-2}"
    assert protect_title("Text-to-Image Synthesis") == "Text-to-Image Synthesis"
    assert protect_title("{LION}: Latent Point Diffusion for 3D Shapes") == "{LION}: Latent Point Diffusion for {3D} Shapes"
    assert protect_title("StyleCLIP and MaskGIT") == "{StyleCLIP} and {MaskGIT}"


def test_output_obeys_the_aaai_kit_rules(bundle: Path):
    for name in FILES:
        if not name.endswith(".tex"):
            continue
        tex = (bundle / name).read_text()
        used = set()
        for opts, pkgs in re.findall(r"\\usepackage(\[[^\]]*\])?\{([^}]+)\}", tex):
            for p in pkgs.split(","):
                used.add(p.strip())
                if p.strip() == "natbib":
                    assert not opts, "natbib must be loaded without options"
        assert not used & set(FORBIDDEN_PACKAGES), (name, used & set(FORBIDDEN_PACKAGES))
        for command in FORBIDDEN_COMMANDS:
            assert command not in tex, (name, command)


def test_table_is_a_booktabs_table_star_as_wide_as_the_text(bundle: Path):
    table = (bundle / "comparison-table.tex").read_text()
    assert "\\begin{table*}" in table and "\\toprule" in table and "\\bottomrule" in table
    assert "{\\textwidth}" in table


def test_running_twice_gives_byte_identical_files(tmp_path: Path, bundle: Path):
    out = tmp_path / "again"
    assert export(REPO, out).exit_code == 0
    for name in FILES + ("overleaf.zip",):
        assert (out / name).read_bytes() == (bundle / name).read_bytes(), name
    assert export(REPO, out).exit_code == 0  # re-export over an untouched bundle is allowed


def test_a_hand_edited_file_is_never_silently_overwritten(tmp_path: Path):
    out = tmp_path / "ov"
    assert export(REPO, out).exit_code == 0
    section = out / "related-work.tex"
    section.write_text(section.read_text() + "% my own edit\n")
    result = export(REPO, out)
    assert result.exit_code == 1
    assert f"{out.as_posix()}/related-work.tex:1: changed or added by hand since the last export" in result.output
    assert section.read_text().endswith("% my own edit\n")
    assert export(REPO, out, "--force").exit_code == 0
    assert not section.read_text().endswith("% my own edit\n")


def test_prose_specials_are_escaped_and_math_stays_math(good_kb: Path, tmp_path: Path):
    note = good_kb / "papers" / "oord2017neural.md"
    text = note.read_text().replace(
        "It describes a\ndiscrete autoencoder",
        "It costs 50% & uses snake_case, #tags, ~tilde, ^caret, a back\\\\slash, {braces} and $\\beta \\lVert z_e \\rVert^2$. It describes a\ndiscrete autoencoder")
    note.write_text(text)
    out = tmp_path / "ov"
    result = export(good_kb, out, "--words", "200")
    assert result.exit_code == 0, result.output
    tex = (out / "related-work.tex").read_text()
    for escaped in ("50\\%", "\\&", "snake\\_case", "\\#tags", "\\textasciitilde", "\\^{}caret", "\\textbackslash", "\\{braces\\}"):
        assert escaped in tex, escaped
    assert "\\(\\beta \\lVert z_e \\rVert^2\\)" in tex  # math stays math, untouched


def test_options_select_groups_papers_facets_budget_and_table(tmp_path: Path):
    out = tmp_path / "a"
    assert export(REPO, out, "--group", "masked-and-discrete-diffusion", "--no-table").exit_code == 0
    tex = (out / "related-work.tex").read_text()
    assert tex.count("\\paragraph{") == 1 and "Masked and discrete-diffusion priors" in tex
    assert not (out / "comparison-table.tex").exists() and "comparison-table" not in (out / "main.tex").read_text()
    out = tmp_path / "b"
    assert export(REPO, out, "--facet", "modality=audio", "--no-table").exit_code == 0
    cited = set(re.findall(r"\\citep\{([^}]+)\}", (out / "related-work.tex").read_text()))
    survey, _ = load(REPO, deep=False)
    assert cited == {k for k, n in survey.notes.items() if "audio" in n.meta.modality}
    out = tmp_path / "c"
    key = next(iter(survey.notes))
    assert export(REPO, out, "--paper", key, "--words", "10").exit_code == 0
    body = (out / "related-work.tex").read_text().split("\\paragraph{", 1)[1]
    assert re.findall(r"\\cite[tp]\{([^}]+)\}", body) == [key]


def test_unknown_options_fail_with_one_line_each(tmp_path: Path):
    result = export(REPO, tmp_path / "x", "--group", "gans", "--facet", "prior=flow")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("--group:1: unknown group 'gans'; one of: discrete-tokenizers")
    assert lines[1].startswith("--facet:1: unknown facet filter 'prior=flow'; one of:")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_bundle_compiles_with_every_citation_resolved_and_every_title_printed(bundle: Path, tmp_path: Path):
    need_latex()
    work = tmp_path / "compile"
    shutil.copytree(bundle, work)
    text = fold(compile_pdf(work))
    survey, _ = load(REPO, deep=False)
    keys = set(re.findall(r"@\w+\{([^,]+),", (bundle / "references.bib").read_text()))
    missing = [k for k in keys if fold(survey.entries[k].title) not in text]
    assert not missing, f"titles missing from the PDF: {missing}"


PROSE = st.text(
    alphabet=st.sampled_from(list("abc XYZ019.,;:!?()[]-'\"%&_#~^\\{}$@<>|/*") + ["é", "ü", "ß", "Ω", "→", "≈", "中", "😀", "\u00a0"]),
    min_size=1, max_size=60)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prose=PROSE)
def test_arbitrary_prose_either_compiles_or_is_rejected_by_the_check(good_kb: Path, tmp_path_factory, prose: str):
    need_latex()
    root = tmp_path_factory.mktemp("kb")
    shutil.copytree(good_kb, root, dirs_exist_ok=True)
    note = root / "papers" / "oord2017neural.md"
    note.write_text(note.read_text().replace("This fixture note stands", prose + " This fixture note stands", 1))
    check = runner.invoke(app, ["check", "--root", str(root)])
    if check.exit_code != 0:
        lines = [l for l in check.output.splitlines() if not l.startswith("atlas check")]
        assert lines and all(re.match(r"^papers/oord2017neural\.md:\d+: .+; .+", l) for l in lines), check.output
        return
    out = root / "out"
    result = export(root, out, "--words", "400")
    assert result.exit_code == 0, result.output
    compile_pdf(out)
