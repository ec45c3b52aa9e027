"""The real survey's site: `mkdocs build --strict` with no warning, a page for everything the
survey holds, and a failing build (one clear line) on an unknown citation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli import app
from atlas.loader import load
from atlas.site import lineage_graph

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def survey():
    survey, _ = load(REPO, deep=False)
    assert survey is not None
    return survey


@pytest.mark.slow
def test_strict_build_has_no_warning(built_site):
    site, log, seconds = built_site
    print(f"site build: {seconds:.1f} s")
    assert not [ln for ln in log.splitlines() if ln.startswith(("WARNING", "ERROR"))]
    assert (site / "index.html").is_file() and (site / "search" / "search_index.json").is_file()


@pytest.mark.slow
def test_every_note_has_a_full_page(built_site, survey):
    site = built_site[0]
    for key, note in survey.notes.items():
        html = (site / "papers" / key / "index.html").read_text(encoding="utf-8")
        for anchor in (
            'id="bibtex"',
            'id="reference-implementation"',
            'id="builds-on"',
            'id="built-upon-by"',
            'id="similarity-to-our-work"',
            'id="difference-from-our-work"',
            "atlas-compare",
        ):
            assert anchor in html, (key, anchor)
        assert "doc doc-object" not in html, key  # the API is rendered on the API pages only
        for module in note.modules:  # each member listed links to its entry on the module's API page
            assert re.search(rf'href="\.\./\.\./api/{module}/#reference_impls\.{module}\.\w+"', html), (key, module)
        assert f"@{survey.entries[key].entry_type}{{{key}" in re.sub(r"<[^>]+>", "", html), key
        for t in note.meta.tests:
            assert f"source/{t.removesuffix('.py')}/" in html, (key, t)
    for key in survey.pending:
        assert (site / "papers" / key / "index.html").is_file()


@pytest.mark.slow
def test_citations_link_to_the_cited_page_with_its_title(built_site, survey):
    html = (built_site[0] / "papers" / "lee2022autoregressive" / "index.html").read_text(encoding="utf-8")
    for key in ("oord2017neural", "esser2021taming"):
        entry = survey.entries[key]
        m = re.search(rf'<a href="\.\./{key}/" title="([^"]*)">([^<]*)</a>', html)
        assert m, key
        assert m.group(2) == f"{entry.author_short} ({entry.year})"
        assert m.group(1).replace("&#39;", "'").replace("&amp;", "&") == entry.title.replace('"', "'")


@pytest.mark.slow
def test_overviews_table_figures_home_and_api(built_site, survey):
    site = built_site[0]
    for g in survey.config.groups:
        html = (site / "groups" / g.id / "index.html").read_text(encoding="utf-8")
        assert all(f"../../papers/{n.key}/" in html for n in survey.in_group(g.id))
    for v in {m for n in survey.notes.values() for m in n.meta.modality}:
        assert (site / "modalities" / v / "index.html").is_file()
    table = (site / "table" / "index.html").read_text(encoding="utf-8")
    comparison = table.split('class="atlas-sortable"')[1]  # the first sortable table: one row per paper
    assert comparison.split("</table>")[0].count("<tr>") == len(survey.notes) + 1
    assert "atlas-sortable" in table
    for fig in ("timeline.svg", "lineage.svg"):
        assert (site / "figures" / fig).stat().st_size > 5000
    home = re.sub(r"<[^>]+>", " ", (site / "index.html").read_text(encoding="utf-8"))
    modules = [m.name for m in survey.inventory.modules]
    assert re.search(rf"\b{len(survey.entries)}\s+{len(survey.notes)}\s+{len(modules)}\b", home)
    for mod in modules:
        assert "doc doc-" in (site / "api" / mod / "index.html").read_text(encoding="utf-8"), mod
    assert (site / "contributing" / "index.html").is_file()


@pytest.mark.slow
def test_notebook_pages_are_linked_from_their_notes(built_site, survey):
    if not (REPO / "atlas" / "notebooks.py").is_file():
        pytest.skip("atlas/notebooks.py is not written yet")
    site = built_site[0]
    for key, note in survey.notes.items():
        if note.meta.notebook:
            name = Path(note.meta.notebook).stem
            assert (site / "notebooks" / name / "index.html").is_file(), name
            assert f"../../notebooks/{name}/" in (site / "papers" / key / "index.html").read_text(encoding="utf-8")


def test_lineage_graph_has_an_edge_per_builds_on(survey):
    g = lineage_graph(survey)
    expected = {(p, k) for k, n in survey.notes.items() for p in n.meta.builds_on}
    assert set(g.edges) == expected


@pytest.mark.slow
def test_unknown_citation_fails_the_site_build_with_one_line(repo_copy: Path):
    note = repo_copy / "papers" / "lee2022autoregressive.md"
    text = note.read_text(encoding="utf-8")
    note.write_text(
        text.replace("## Summary\n", "## Summary\n\nAs shown in [@nosuchpaper2099].\n", 1), encoding="utf-8"
    )
    line = text.splitlines().index("## Summary") + 3
    result = CliRunner().invoke(app, ["site", "--root", str(repo_copy)])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if not line.startswith("atlas site: ")]  # stages
    assert problems == [
        f"papers/lee2022autoregressive.md:{line}: citation '@nosuchpaper2099' is not a key of bib/references.bib; "
        "[@key] or @key with a key of the bib (write \\@ for a literal at sign)"
    ]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_mkdocs_warning_fails_the_build_as_one_problem_taken_from_its_log_record(repo_copy: Path):
    from atlas.problems import Code
    from atlas.site import build

    page = repo_copy / "docs" / "contributing.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the missing page](no-such-page.md).\n", encoding="utf-8")
    problems, log = build(repo_copy, repo_copy / "site")
    assert [p.code for p in problems] == [Code.BUILD], problems
    assert problems[0].path == "mkdocs.yml" and "no-such-page.md" in problems[0].message
    assert "\n" not in str(problems[0]) and "WARNING" in log
