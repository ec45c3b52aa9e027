"""The whole generated site of a Survey: every page and figure, and the navigation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from atlas.model import Survey
from atlas.related import site_markdown as site_related_markdown
from atlas.site.citations import render_citations
from atlas.site.code import api_index_markdown, api_markdown, source_markdown
from atlas.site.common import api_page, group_page, modality_page, paper_page, source_page
from atlas.site.figures import figure_svgs, lineage_graph
from atlas.site.indexes import (
    folder_indexes,
    groups_index_markdown,
    modalities_index_markdown,
    notebooks_index_markdown,
    papers_index_markdown,
    pitfalls_markdown,
)
from atlas.site.overviews import (
    figures_markdown,
    group_markdown,
    home_markdown,
    modality_markdown,
    pending_list_markdown,
    table_markdown,
)
from atlas.site.papers import paper_markdown, pending_markdown


@dataclass
class SitePlan:
    files: dict[str, str | bytes] = field(default_factory=dict)  # site path -> content
    nav: list = field(default_factory=list)  # mkdocs nav structure


def plan(survey: Survey, notebooks: dict[str, Path] | None = None, figures: bool = True) -> SitePlan:
    """Every generated page and figure of `survey`, and the navigation.

    `notebooks` maps a notebook's name to its executed .ipynb (atlas.notebooks.run_all); figures=False
    skips drawing the SVGs (for fast tests).
    """
    notebooks = notebooks or {}
    sp = SitePlan()
    f = sp.files
    for key in survey.entries:
        note = survey.notes.get(key)
        f[paper_page(key)] = paper_markdown(survey, note, notebooks) if note else pending_markdown(survey, key)
    for g in survey.config.groups:
        f[group_page(g.id)] = group_markdown(survey, g.id)
    for v in survey.modalities_in_use():
        f[modality_page(v)] = modality_markdown(survey, v)
    f["table.md"] = table_markdown(survey)
    f["pending.md"] = pending_list_markdown(survey)
    graph = lineage_graph(survey)
    f["figures.md"] = figures_markdown(graph.number_of_nodes(), graph.number_of_edges())
    if figures:
        f.update({f"figures/{name}": svg for name, svg in figure_svgs(survey).items()})
    f["api/index.md"] = api_index_markdown(survey)
    for mod in survey.inventory.modules:
        f[api_page(mod.name)] = api_markdown(survey, mod.name)
    for path in survey.inventory.sources:
        f[source_page(path)] = source_markdown(survey, path)
    for name in notebooks:
        f[f"notebooks/{name}.ipynb"] = Path(notebooks[name]).read_bytes()
    f["index.md"] = home_markdown(survey)
    f["related.md"] = related_markdown(survey)
    f["pitfalls.md"] = pitfalls_markdown(survey)
    f["papers/index.md"] = papers_index_markdown(survey)
    f["groups/index.md"] = groups_index_markdown(survey)
    f["modalities/index.md"] = modalities_index_markdown(survey)
    f["notebooks/index.md"] = notebooks_index_markdown(survey, notebooks)
    f.update(folder_indexes(f))
    sp.nav = navigation(survey, notebooks)
    return sp


def related_markdown(survey: Survey) -> str:
    """The Related work page: each length and the conclusion as prose with links, and the LaTeX to copy."""
    from atlas.export import section_latex  # pandoc is loaded only when the site is built

    page = site_related_markdown(survey, lambda length: section_latex(survey, length))
    return render_citations(page, survey, "related.md")


def navigation(survey: Survey, notebooks: dict[str, Path]) -> list:
    nav: list = [
        {"Home": "index.md"},
        {"Related work": "related.md"},
        {"Comparison table": "table.md"},
        {"Figures": "figures.md"},
        {"Pitfalls": "pitfalls.md"},
    ]
    groups = [{"All papers": "papers/index.md"}, {"Groups": "groups/index.md"}]
    for g in survey.config.groups:
        items = [{"Overview": group_page(g.id)}]
        items += [{n.meta.short: paper_page(n.key)} for n in survey.in_group(g.id)]
        groups.append({g.title: items})
    nav.append({"Papers": groups + [{"Pending papers": "pending.md"}]})
    nav.append(
        {
            "Modalities": [{"Overview": "modalities/index.md"}]
            + [{v: modality_page(v)} for v in survey.modalities_in_use()]
        }
    )
    if survey.inventory.questions:
        nav.append({"Questions": [{q.title: q.page} for q in survey.inventory.questions]})
    if notebooks:
        items = [{name.replace("_", " "): f"notebooks/{name}.ipynb"} for name in sorted(notebooks)]
        nav.append({"Notebooks": [{"Overview": "notebooks/index.md"}] + items})
    nav.append(
        {
            "API reference": [{"Overview": "api/index.md"}]
            + [{m.name: api_page(m.name)} for m in survey.inventory.modules]
        }
    )
    nav.append({"Quality": "quality.md"})  # written by benchmarks/mutation.py
    nav.append({"Parity with peers": "parity.md"})  # tests/parity and benchmarks/peers.py
    nav.append({"Collapse benchmark": "collapse.md"})  # benchmarks/collapse.py
    nav.append({"Contributing": "contributing.md"})
    return nav
