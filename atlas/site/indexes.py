"""Index pages of the site's folders, so that no URL a reader reaches by trimming a path ends in a
directory listing: papers/ (every paper by group, then those without a note), groups/, notebooks/,
and a plain list of what lies below for every other folder of generated pages (modalities/,
source/reference_impls/, ...)."""

from __future__ import annotations

import posixpath

from atlas.model import Survey
from atlas.site.common import authors_of, group_page, link, paper_page, render, title_of

PAPERS, GROUPS, NOTEBOOKS = "papers/index.md", "groups/index.md", "notebooks/index.md"


def _paper(survey: Survey, key: str, page: str) -> dict:
    e = survey.entries[key]
    note = survey.notes.get(key)
    return {
        "name": note.meta.short if note else key,
        "href": link(page, paper_page(key)),
        "title": title_of(e),
        "authors": authors_of(e),
        "year": e.year,
    }


def papers_index_markdown(survey: Survey) -> str:
    groups = [
        {
            "title": g.title,
            "href": link(PAPERS, group_page(g.id)),
            "papers": [_paper(survey, n.key, PAPERS) for n in survey.in_group(g.id)],
        }
        for g in survey.config.groups
    ]
    pending = [_paper(survey, k, PAPERS) for k in survey.pending]
    return render(
        "papers_index.md.j2",
        groups=groups,
        pending=pending,
        total=len(survey.entries),
        pending_href=link(PAPERS, "pending.md"),
    )


def groups_index_markdown(survey: Survey) -> str:
    groups = [
        {
            "title": g.title,
            "intro": g.intro,
            "href": link(GROUPS, group_page(g.id)),
            "count": len(survey.in_group(g.id)),
        }
        for g in survey.config.groups
    ]
    return render("groups_index.md.j2", groups=groups)


def notebooks_index_markdown(survey: Survey, names: list[str]) -> str:
    users: dict[str, list[str]] = {}
    for n in survey.notes.values():
        if n.meta.notebook:
            users.setdefault(posixpath.splitext(posixpath.basename(n.meta.notebook))[0], []).append(n.key)
    notebooks = [
        {
            "title": name.replace("_", " "),
            "href": link(NOTEBOOKS, f"notebooks/{name}.ipynb"),
            "papers": [
                {"name": survey.notes[k].meta.short, "href": link(NOTEBOOKS, paper_page(k))}
                for k in users.get(name, [])
            ],
        }
        for name in sorted(names)
    ]
    return render("notebooks_index.md.j2", notebooks=notebooks)


def _title(path: str, content: str | bytes) -> str:
    """A page's title: its first '# ' heading, else its name."""
    if isinstance(content, str):
        for line in content.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return posixpath.splitext(posixpath.basename(path))[0].replace("_", " ")


def folder_indexes(files: dict[str, str | bytes], existing: set[str] = frozenset()) -> dict[str, str]:
    """An index.md for every folder of `files` pages that has none (in files or in `existing`)."""
    pages = {p: c for p, c in files.items() if p.endswith((".md", ".ipynb"))}
    folders: set[str] = set()
    for p in pages:
        d = posixpath.dirname(p)
        while d:
            folders.add(d)
            d = posixpath.dirname(d)
    out = {}
    for folder in sorted(folders):
        index = f"{folder}/index.md"
        if index in files or index in existing:
            continue
        children = []
        for d in sorted(f for f in folders if posixpath.dirname(f) == folder):
            children.append({"title": posixpath.basename(d) + "/", "href": link(index, f"{d}/index.md")})
        for p in sorted(p for p in pages if posixpath.dirname(p) == folder and not p.endswith("/index.md")):
            children.append({"title": _title(p, pages[p]), "href": link(index, p)})
        out[index] = render("folder_index.md.j2", folder=folder, children=children)
    return out
