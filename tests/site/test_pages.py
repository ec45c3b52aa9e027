"""What the generated pages say (fast; no mkdocs): a paper page's search boosts, tags, aliases,
relevance and key numbers; the comparison table's relevance and key-number columns; the home
page's core papers; the Pitfalls page; an index page for every folder of pages."""

from __future__ import annotations

import copy
import posixpath
import re
from pathlib import Path

import pytest
import yaml

from atlas.loader import load
from atlas.model import KeyNumber
from atlas.site import plan
from atlas.site.overviews import sort_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def survey():
    survey, problems = load(REPO, deep=False)
    assert survey is not None and not problems, problems
    return survey


@pytest.fixture
def numbered(survey):
    """The survey with key numbers and a Pitfalls section on two notes (a copy: the module's stays clean)."""
    s = copy.deepcopy(survey)
    for note in s.notes.values():  # only the two notes below list numbers
        note.meta.numbers = []
    vq, rq = s.notes["oord2017neural"], s.notes["lee2022autoregressive"]
    vq.meta.numbers = [
        KeyNumber(what="codebook size", value=512, source="Sec. 4.1"),
        KeyNumber(what="Token grid", value="32x32", source="google-deepmind/sonnet sonnet/src/nets/vqvae.py"),
    ]
    rq.meta.numbers = [KeyNumber(what="codebook size", value="16,384", source="Table 1")]
    vq.sections["Pitfalls"] = "The paper's EMA variant is an alternative [@razavi2019generating]."
    return s


def front_matter(page: str) -> dict:
    assert page.startswith("---\n")
    return yaml.safe_load(page.split("---\n")[1])


def test_a_paper_page_is_boosted_in_search_and_tagged_with_its_names(survey):
    files = plan(survey, figures=False).files
    note = survey.notes["lee2022autoregressive"]
    page = files["papers/lee2022autoregressive.md"]
    meta = front_matter(page)
    assert meta["search"]["boost"] > 1
    weights = meta["search"]["section_boost"]  # atlas/site/search.py: the Summary and Method weigh most
    assert weights["summary"] > 1 and weights["method"] > 1 and weights["*"] < 1
    assert meta["tags"] == [note.meta.short, *note.meta.aliases] and "residual quantization" in meta["tags"]
    assert f"**Also known as:** {', '.join(note.meta.aliases)}" in page
    assert f"relevance to it: **{survey.relevance(note)}**" in page
    for other in ("groups/autoregressive-priors.md", "index.md"):
        assert "boost" not in (files.get(other) or "")
    assert front_matter(files["api/vq.md"])["search"]["boost"] < 1  # a function's page below the paper's


def test_key_numbers_show_on_the_paper_page_with_their_sources(numbered):
    page = plan(numbered, figures=False).files["papers/oord2017neural.md"]
    assert "## Key numbers\n\n| what | value | source |\n|---|---|---|\n| codebook size | 512 | Sec. 4.1 |\n" in page
    assert (
        "| Token grid | 32x32 | [google-deepmind/sonnet](https://github.com/google-deepmind/sonnet) "
        "`sonnet/src/nets/vqvae.py` |" in page
    )
    assert page.index("## Key numbers") < page.index("## Reference implementation")


def test_the_comparison_table_sorts_papers_by_a_number_that_several_notes_list(numbered):
    table = plan(numbered, figures=False).files["table.md"]
    numbers = table[table.index("## Key numbers") :]
    assert "| Paper | codebook size |" in numbers and "token grid" not in numbers  # one note lists the grid only
    assert '<span data-sort="512">512</span>' in numbers
    assert '<span data-sort="16384">16,384</span>' in numbers


def test_sort_values_read_counts_separators_scales_and_grids():
    assert [sort_value(v) for v in (512, 0.25, "16,384", "1.4B", "8k", "16x16", "4 x 4 x 2", "n/a")] == [
        512.0,
        0.25,
        16384.0,
        1.4e9,
        8e3,
        256.0,
        32.0,
        None,
    ]


def test_the_table_ranks_relevance_and_the_home_page_lists_the_core_papers(survey):
    files = plan(survey, figures=False).files
    table, home = files["table.md"], files["index.md"]
    assert "| Year | Relevance |" in table
    core = [n for n in survey.notes_by_year() if survey.relevance(n) == "core"]
    assert core and '<span data-sort="0">core</span>' in table
    listed = home[home.index("## Closest to our work") : home.index("## At a glance")]
    assert [line.split("](")[1].split(")")[0] for line in listed.splitlines() if line.startswith("- [")] == [
        f"papers/{n.key}.md" for n in core
    ]


def test_the_pitfalls_page_gathers_each_notes_pitfalls_section_and_links_back(numbered):
    page = plan(numbered, figures=False).files["pitfalls.md"]
    assert "## [VQ-VAE](papers/oord2017neural.md#pitfalls)" in page
    assert "The paper's EMA variant is an alternative ([Razavi et al., 2019](papers/razavi2019generating.md" in page


def test_every_folder_of_generated_pages_has_an_index_page(survey):
    files = plan(survey, {"ar_sampling": REPO / "docs" / "notebooks" / "ar_sampling.py"}, figures=False).files
    for name in ("papers", "groups", "modalities", "notebooks", "api", "source", "source/tests/reference_impls"):
        assert f"{name}/index.md" in files, name
    for path in files:
        folder = posixpath.dirname(path)
        while folder and not folder.startswith("figures"):
            assert f"{folder}/index.md" in files, path
            folder = posixpath.dirname(folder)
    papers = files["papers/index.md"]
    assert all(f"]({key}.md)" in papers for key in survey.entries)
    assert "[ar sampling](ar_sampling.ipynb)" in files["notebooks/index.md"]


def test_a_paper_page_lists_the_members_it_implements_and_leaves_the_api_to_the_api_page(survey):
    """mkdocstrings renders a module once, on api/<module>.md; a paper page lists the members it names
    (all of a module it names whole) with their docstring summaries, each linked there by autorefs."""
    files = plan(survey, figures=False).files
    page = files["papers/oord2017neural.md"]  # implementation: reference_impls.vq, reference_impls.vqvae.VQVAE
    assert "\n::: " not in page
    assert not [p for p, text in files.items() if p.startswith("papers/") and "\n::: " in str(text)]
    assert all("\n::: reference_impls." in files[f"api/{m.name}.md"] for m in survey.inventory.modules)
    vq = next(m for m in survey.inventory.modules if m.name == "vq")
    assert {"nearest_code", "straight_through", "VectorQuantizer"} <= {m.name for m in vq.members}
    assert not any(m.name.startswith("_") for m in vq.members)
    for member in vq.members:
        line = f"[`{member.name}`][reference_impls.vq.{member.name}]"
        assert f"- {member.kind} {line}" + (f": {member.summary}" if member.summary else "") in page
    listed = re.findall(r"\]\[reference_impls\.vqvae\.(\w+)\]", page)
    assert listed == ["VQVAE"]  # a member named alone: that member only, not the whole module
    # a summary is the docstring's first paragraph on one line, not its first line
    audiolm = next(m for m in survey.inventory.modules if m.name == "audiolm")
    flatten = next(m for m in audiolm.members if m.name == "flatten_levels")
    assert flatten.summary == (
        "(B, T, q) codes of levels first_level .. first_level+q-1 -> (B, T * q) vocabulary ids, "
        "time-major and level-minor, each level shifted into its own range."
    )


def test_figures_are_drawn_again_only_when_what_they_show_changes(survey, tmp_path, monkeypatch):
    from atlas.site import figures

    s = copy.deepcopy(survey)
    s.root = tmp_path
    first = figures.figure_svgs(s)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / figures.CACHE).iterdir()) == ["lineage", "timeline"]
    monkeypatch.setattr(figures, "timeline_svg", lambda _s: pytest.fail("redrawn with nothing changed"))
    monkeypatch.setattr(figures, "lineage_svg", lambda _s: pytest.fail("redrawn with nothing changed"))
    assert figures.figure_svgs(s) == first
    monkeypatch.undo()
    s.notes["oord2017neural"].meta.short = "VQ-VAE (renamed)"
    renamed = figures.figure_svgs(s)
    assert b"VQ-VAE (renamed)" in renamed["timeline.svg"] and b"VQ-VAE (renamed)" in renamed["lineage.svg"]
    assert len(list((tmp_path / figures.CACHE).iterdir())) == 2  # the old drawings replaced, not kept


def test_a_notebook_whose_header_names_a_paper_is_linked_from_that_papers_page_beside_its_own(survey):
    s = copy.deepcopy(survey)
    path = "docs/notebooks/ar_sampling.py"
    header = "# ---\n# jupyter:\n#   latent_atlas:\n#     papers: [oord2017neural, lancucki2020robust]\n# ---\n"
    s.inventory.sources[path] = header + "\n# %%\nx = 1\n"
    own = s.notes["oord2017neural"].meta.notebook
    assert own and own != path
    names = {"ar_sampling": REPO / path, Path(own).stem: REPO / own}
    files = plan(s, names, figures=False).files
    vqvae, robust = files["papers/oord2017neural.md"], files["papers/lancucki2020robust.md"]
    assert '!!! example "Notebooks"' in vqvae  # its own notebook and the one naming it, its own first
    assert vqvae.index(f"notebooks/{Path(own).stem}.ipynb") < vqvae.index("notebooks/ar_sampling.ipynb")
    assert '!!! example "Notebook' in robust and "../notebooks/ar_sampling.ipynb" in robust  # with its others
    other = next(k for k, n in s.notes.items() if not n.meta.notebook and k != "lancucki2020robust")
    assert "ar_sampling.ipynb" not in files[f"papers/{other}.md"]  # a paper the header does not name
    assert "VQ-VAE" in files["notebooks/index.md"].split("[ar sampling]")[1].split("\n")[0]
