"""Pages over many papers: home, groups, modalities, the comparison table, pending papers, figures."""

from __future__ import annotations

from atlas.model import FACETS, Note, Survey
from atlas.site.citations import render_citations
from atlas.site.common import (
    api_page,
    authors_of,
    group_page,
    link,
    modality_page,
    paper_page,
    render,
    source_page,
    title_of,
)

FACET_TITLES = {"modality": "Modality", "latent": "Latent", "prior": "Prior", "conditioning": "Conditioning"}


def first_paragraph(survey: Survey, note: Note, page: str) -> str:
    para = note.sections.get("Summary", "").strip().split("\n\n")[0]
    return render_citations(para, survey, page)


def paper_list(survey: Survey, notes: list[Note], page: str) -> list[dict]:
    out = []
    for n in notes:
        e = survey.entries[n.key]
        out.append(
            {
                "short": n.meta.short,
                "href": link(page, paper_page(n.key)),
                "title": title_of(e),
                "authors": authors_of(e),
                "year": e.year,
                "latent": n.meta.latent,
                "prior": n.meta.prior,
                "modality": n.meta.modality,
                "summary": first_paragraph(survey, n, page),
            }
        )
    return out


def group_markdown(survey: Survey, gid: str) -> str:
    page = group_page(gid)
    return render("group.md.j2", group=survey.config.group(gid), papers=paper_list(survey, survey.in_group(gid), page))


def modality_markdown(survey: Survey, value: str) -> str:
    page = modality_page(value)
    notes = survey.notes_by_year([n for n in survey.notes.values() if value in n.meta.modality])
    desc = survey.config.vocabularies["modality"][value]
    return render(
        "modality.md.j2", value=value, description=desc[0].upper() + desc[1:], papers=paper_list(survey, notes, page)
    )


def table_markdown(survey: Survey) -> str:
    page = "table.md"
    rows = []
    for n in survey.notes_by_year():
        e, m = survey.entries[n.key], n.meta
        rows.append(
            {
                "short": m.short,
                "href": link(page, paper_page(n.key)),
                "title": title_of(e),
                "modality": m.modality,
                "latent": m.latent,
                "prior": m.prior,
                "conditioning": m.conditioning,
                "year": e.year,
                "implementation": [
                    f"[{d.removeprefix('reference_impls.')}]({link(page, api_page(d.split('.')[1]))})"
                    for d in m.implementation
                ],
                "tests": [
                    f"[{t.rsplit('/', 1)[-1].removesuffix('.py')}]({link(page, source_page(t))})" for t in m.tests
                ],
            }
        )
    facets = [{"title": FACET_TITLES[f], "vocab": survey.config.vocabularies[f]} for f in FACETS]
    return render("table.md.j2", rows=rows, facets=facets)


def pending_list_markdown(survey: Survey) -> str:
    page = "pending.md"
    papers = []
    for k in survey.pending:
        e = survey.entries[k]
        papers.append(
            {"title": title_of(e), "href": link(page, paper_page(k)), "authors": authors_of(e), "year": e.year}
        )
    return render("pending_list.md.j2", papers=papers, contributing=link(page, "contributing.md"))


def figures_markdown(nodes: int, edges: int) -> str:
    return render("figures.md.j2", nodes=nodes, edges=edges)


def home_markdown(survey: Survey) -> str:
    inv = survey.inventory
    counts = {
        "entries": len(survey.entries),
        "notes": len(survey.notes),
        "modules": len(inv.modules),
        "test_files": len(inv.test_files),
        "tests": inv.test_count,
        "notebooks": len(inv.notebooks),
        "pending": len(survey.pending),
    }
    groups = [
        {"title": g.title, "href": group_page(g.id), "count": len(survey.in_group(g.id))} for g in survey.config.groups
    ]
    modalities = [f"[{v}]({modality_page(v)})" for v in survey.modalities_in_use()]
    return render("home.md.j2", ours=survey.config.our_work, counts=counts, groups=groups, modalities=modalities)
