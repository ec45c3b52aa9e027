"""Index pages, so that no address of the site ends in a directory listing (papers/, groups/,
modalities/, notebooks/, source/...), and the Pitfalls page that gathers every note's pitfalls."""

from __future__ import annotations

import posixpath
from pathlib import Path

from atlas.model import Survey
from atlas.site.citations import render_citations
from atlas.site.common import authors_of, group_page, link, modality_page, paper_page, render, title_of
from atlas.site.papers import notebook_paths


def pitfalls_markdown(survey: Survey) -> str:
    page = "pitfalls.md"
    papers = []
    for n in survey.notes_by_year():
        text = n.sections.get("Pitfalls", "").strip()
        if text:
            href = link(page, paper_page(n.key)) + "#pitfalls"
            papers.append({"short": n.meta.short, "href": href, "text": render_citations(text, survey, page)})
    return render("pitfalls.md.j2", papers=papers, total=len(survey.notes))


def papers_index_markdown(survey: Survey) -> str:
    page = "papers/index.md"
    groups = []
    for g in survey.config.groups:
        papers = []
        for n in survey.in_group(g.id):
            e = survey.entries[n.key]
            papers.append(
                {
                    "short": n.meta.short,
                    "href": link(page, paper_page(n.key)),
                    "title": title_of(e),
                    "authors": authors_of(e),
                    "year": e.year,
                    "relevance": survey.relevance(n),
                }
            )
        groups.append({"title": g.title, "href": link(page, group_page(g.id)), "papers": papers})
    pending = [
        {
            "title": title_of(survey.entries[k]),
            "href": link(page, paper_page(k)),
            "authors": authors_of(survey.entries[k]),
            "year": survey.entries[k].year,
        }
        for k in survey.pending
    ]
    return render(
        "papers_index.md.j2",
        groups=groups,
        notes=survey.notes,
        pending=pending,
        table=link(page, "table.md"),
        pending_page=link(page, "pending.md"),
    )


def groups_index_markdown(survey: Survey) -> str:
    page = "groups/index.md"
    groups = [
        {
            "title": g.title,
            "href": link(page, group_page(g.id)),
            "count": len(survey.in_group(g.id)),
            "intro": " ".join(g.intro.split()),
        }
        for g in survey.config.groups
    ]
    return render("groups_index.md.j2", groups=groups)


def modalities_index_markdown(survey: Survey) -> str:
    page = "modalities/index.md"
    vocab = survey.config.vocabularies["modality"]
    items = [{"name": v, "href": link(page, modality_page(v)), "about": vocab[v]} for v in survey.modalities_in_use()]
    return render(
        "listing.md.j2", title="Modalities", intro="The papers by the kind of data they generate.", items=items
    )


def notebooks_index_markdown(survey: Survey, notebooks: dict[str, Path]) -> str:
    page = "notebooks/index.md"
    items = []
    for path in survey.inventory.notebooks:
        name = Path(path).stem
        src = link(page, f"source/{posixpath.splitext(path)[0]}.md")
        href = link(page, f"notebooks/{name}.ipynb") if name in notebooks else src
        users = [n.meta.short for n in survey.notes.values() if path in notebook_paths(survey, n)]
        about = f"[source]({src})" + (f" · shows {', '.join(users)}" if users else "")
        items.append({"name": name.replace("_", " "), "href": href, "about": about})
    intro = (
        "Each notebook runs reference implementations side by side on small seeded data; it is executed when the "
        "site is built. Its source is a plain Python file under `docs/notebooks/` (jupytext percent format)."
    )
    return render("listing.md.j2", title="Notebooks", intro=intro, items=items)


def folder_indexes(files: dict[str, str | bytes]) -> dict[str, str]:
    """A listing page for every folder of the site's pages that has no index page of its own."""
    pages = [p for p in files if p.endswith((".md", ".ipynb"))]
    folders = {posixpath.dirname(p) for p in pages}
    for f in list(folders):
        while f:
            folders.add(f)
            f = posixpath.dirname(f)
    out = {}
    for folder in sorted(folders - {""}):
        index = f"{folder}/index.md"
        if index in files:
            continue
        inside = sorted({posixpath.relpath(p, folder).split("/")[0] for p in pages if p.startswith(folder + "/")})
        items = []
        for name in inside:
            target = f"{folder}/{name}"
            href = link(index, f"{target}/index.md") if target not in files else link(index, target)
            items.append(
                {"name": posixpath.splitext(name)[0] if target in files else name + "/", "href": href, "about": ""}
            )
        out[index] = render("listing.md.j2", title=f"{folder}/", intro="The pages under this folder.", items=items)
    return out
