"""Pages over many papers: home, groups, modalities, the comparison table, pending papers, figures."""

from __future__ import annotations

import math
import re
from collections import Counter

from atlas.model import DISCRETE_LATENTS, FACETS, RELEVANCE, Note, Survey, module_of
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
                "relevance": survey.relevance(n),
                "relevance_rank": RELEVANCE.index(survey.relevance(n)),
                "implementation": [
                    f"[{d.removeprefix('reference_impls.')}]({link(page, api_page(module_of(d)))})"
                    for d in m.implementation
                ],
                "tests": [
                    f"[{t.rsplit('/', 1)[-1].removesuffix('.py')}]({link(page, source_page(t))})" for t in m.tests
                ],
            }
        )
    facets = [{"title": FACET_TITLES[f], "vocab": survey.config.vocabularies[f]} for f in FACETS]
    ours = survey.config.our_work.name.lower()
    return render("table.md.j2", rows=rows, facets=facets, ours=ours, numbers=numbers_table(survey, page))


NUMBER_COLUMNS = 8  # at most this many `what` labels, the most listed first
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9}


def sort_value(value: str | int | float) -> float | None:
    """A key number as one number to sort by: 16384, '16,384', '1.4B', '16x16' (256); None for text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).replace(",", "").strip()
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKMB]?)", text):
        return float(m.group(1)) * _SCALE.get(m.group(2), 1.0)
    if re.fullmatch(r"\d+(?:\s*[x\u00d7]\s*\d+)+", text):
        return float(math.prod(int(d) for d in re.findall(r"\d+", text)))
    return None


def numbers_table(survey: Survey, page: str) -> dict:
    """Papers by the `what` labels that two or more notes list (one column each), values sortable."""
    labels: Counter[str] = Counter()
    for n in survey.notes.values():
        labels.update({k.what.strip().lower() for k in n.meta.numbers})
    # most listed first, ties by name: the order must not depend on set iteration (PYTHONHASHSEED)
    columns = [w for w, c in sorted(labels.items(), key=lambda wc: (-wc[1], wc[0])) if c >= 2][:NUMBER_COLUMNS]
    rows = []
    for n in survey.notes_by_year():
        have = {k.what.strip().lower(): k.value for k in n.meta.numbers}
        if not any(c in have for c in columns):
            continue
        values = []
        for c in columns:
            v = have.get(c)
            key = sort_value(v) if v is not None else None
            values.append(None if v is None else {"text": str(v), "sort": str(v) if key is None else f"{key:g}"})
        rows.append({"short": n.meta.short, "href": link(page, paper_page(n.key)), "cells": values})
    return {"columns": columns, "rows": rows}


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
    core = []
    for n in survey.notes_by_year():
        if survey.relevance(n) == "core":
            e = survey.entries[n.key]
            core.append(
                {
                    "short": n.meta.short,
                    "href": paper_page(n.key),
                    "title": title_of(e),
                    "year": e.year,
                    "latent": n.meta.latent,
                    "modality": n.meta.modality,
                }
            )
    return render(
        "home.md.j2",
        ours=survey.config.our_work,
        counts=counts,
        groups=groups,
        modalities=modalities,
        core=core,
        discrete=DISCRETE_LATENTS,
    )
