"""An author's anonymous AAAI submission (tests/fixtures/author/) with the survey's section in it,
through `--into` and through the paste route of the README, compiled in the real kit.

The fixture's .bib is in Google Scholar's style: some survey papers under Scholar's keys
(`van2017neural` for `oord2017neural`, `yu2021vector` for `yu2022vector`), some under the
survey's own keys (same paper, other fields), and one survey key holding another paper. Every
route must compile clean and print every paper once in the references.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from layout import measure
from test_export import REPO, export, fold, need_latex
from test_kit import compile_clean, kit_into

from atlas.export.paper import Identity, author_entries, reconcile, rename_citations
from atlas.loader import load

FIXTURE = REPO / "tests" / "fixtures" / "author"


def author_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "paper"
    shutil.copytree(FIXTURE, folder)
    return folder


def references_once(folder: Path, name: str = "paper") -> list[str]:
    """The keys of the compiled reference list, after checking each survey paper appears at most once."""
    bbl = (folder / f"{name}.bbl").read_text(errors="replace")
    keys = re.findall(r"\\bibitem\[[^\]]*\]\{([^}]+)\}", bbl) or re.findall(r"\\bibitem\{([^}]+)\}", bbl)
    assert len(keys) == len(set(keys)), "a repeated key in the references"
    survey, _ = load(REPO, deep=False)
    text = fold(bbl)
    twice = [k for k, e in survey.entries.items() if len(fold(e.title)) > 25 and text.count(fold(e.title)) > 1]
    assert not twice, f"printed twice in the references: {twice}"
    return keys


def pictures(folder: Path, name: str = "paper") -> None:
    """The first two pages as PNG beside the PDF (for looking at; pdftoppm from poppler)."""
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", f"{name}.pdf", name], cwd=folder, check=True)


@pytest.mark.slow
@pytest.mark.parametrize("length", ["short", "column"])
def test_the_section_goes_into_the_authors_paper_with_into_and_compiles_clean_in_the_kit(tmp_path: Path, length: str):
    need_latex()
    folder = author_copy(tmp_path)
    result = export(REPO, tmp_path / "bundle", "--length", length, "--into", str(folder / "paper.tex"))
    assert result.exit_code == 0, result.output
    assert "the survey's 'oord2017neural' is your 'van2017neural'" in result.output
    assert "the survey's 'yu2022vector' is your 'yu2021vector' (same arXiv id 2110.04627)" in result.output
    assert "your entry 'chen2020generative' is another paper" in result.output
    used = kit_into(folder)
    compile_clean(folder, "paper")
    keys = references_once(folder)
    assert {"van2017neural", "mine2024tokens", "mine2025usage"} <= set(keys)
    assert "oord2017neural" not in keys, "the author's key is cited, not the survey's"
    m = measure(folder / "paper.pdf", until="Method")
    print(f"\n{length} section in the author's paper ({used}): {m}")
    pictures(folder)
    assert (folder / "paper-1.png").is_file()


@pytest.mark.slow
def test_the_paste_route_of_the_readme_compiles_clean_with_every_paper_once(tmp_path: Path):
    need_latex()
    folder = author_copy(tmp_path)
    bundle = tmp_path / "bundle"
    assert export(REPO, bundle).exit_code == 0
    section = (bundle / "related-work.tex").read_text()
    table = (bundle / "comparison-table.tex").read_text()
    body = "\n".join(ln for ln in section.splitlines() if not ln.startswith("%"))
    head, rest = body.split("\n", 1)  # the \section line first, the table right after it (README)
    pasted = head + "\n" + "\n".join(ln for ln in table.splitlines() if not ln.startswith("%")) + "\n" + rest
    # the README: leave out what your .bib already holds, and cite your key for a paper it holds under another
    bib = (folder / "refs.bib").read_text()
    author, problems = author_entries(bib, "refs.bib")
    assert not problems
    survey, _ = load(REPO, deep=False)
    identities = {k: Identity.of(e.fields) for k, e in survey.entries.items()}
    cited = {k for c in re.findall(r"\\cite[tp]\{([^}]+)\}", pasted) for k in c.split(", ")}
    renamed, _ = reconcile(cited, identities, author, "refs.bib")
    pasted = rename_citations(pasted, renamed)
    ours = (bundle / "references.bib").read_text()
    entries = re.split(r"\n(?=@)", ours)
    kept = [
        e
        for e in entries
        if (m := re.match(r"@\w+\{([^,]+),", e)) and m.group(1) not in author and m.group(1) not in renamed
    ]
    for key, new in renamed.items():
        if new.endswith("-atlas"):
            entry = next(e for e in entries if e.startswith("@") and re.match(rf"@\w+\{{{re.escape(key)},", e))
            kept.append(entry.replace(f"{{{key},", f"{{{new},", 1))
    (folder / "refs.bib").write_text(bib + "\n" + "\n".join(kept))
    paper = (folder / "paper.tex").read_text()
    marker = "% atlas:begin related-work\n% atlas:end related-work\n"
    (folder / "paper.tex").write_text(paper.replace(marker, pasted + "\n"))
    kit_into(folder)
    compile_clean(folder, "paper")
    references_once(folder)


@pytest.mark.slow
def test_the_catalogue_goes_between_markers_of_its_own_and_compiles_clean_in_the_kit(tmp_path: Path):
    need_latex()
    folder = author_copy(tmp_path)
    paper = folder / "paper.tex"
    text = paper.read_text()
    paper.write_text(
        text.replace("\\end{document}", "% atlas:begin appendix-papers\n% atlas:end appendix-papers\n\\end{document}")
    )
    refused = export(REPO, tmp_path / "b", "--into", str(paper))
    assert refused.exit_code == 1 and "markers but the export has no catalogue" in refused.output
    assert paper.read_text().count("% atlas:end appendix-papers") == 1, "nothing written on a refusal"
    result = export(REPO, tmp_path / "b", "--style", "catalogue", "--into", str(paper))
    assert result.exit_code == 0, result.output
    written = paper.read_text()
    appendix = written[written.index("% atlas:begin appendix-papers") : written.index("% atlas:end appendix-papers")]
    assert "\\section{Surveyed Papers}" in appendix and "\\citep{van2017neural}" in appendix
    assert not re.search(r"\\texttt\{(?:vq|rq|sq|dvae)\}", appendix), "no facet labels in the appendix's prose"
    kit_into(folder)
    compile_clean(folder, "paper")
    references_once(folder)
    again = export(REPO, tmp_path / "b", "--style", "catalogue", "--into", str(paper))
    assert again.exit_code == 0 and paper.read_text() == written, "a second run changes no byte"
