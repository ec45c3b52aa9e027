"""The page of each paper: a full page for a paper with a note, a short one for a pending paper."""

from __future__ import annotations

import re
from pathlib import Path

from atlas import markdown as md
from atlas.bib import SITE_ONLY_FIELDS, BibEntry
from atlas.model import Note, Survey, module_of
from atlas.site.citations import render_citations
from atlas.site.common import (
    api_page,
    attr,
    authors_of,
    cell,
    group_page,
    link,
    modality_page,
    paper_name,
    paper_page,
    render,
    source_page,
    title_of,
)
from atlas.site.search import paper_search_meta


def entry_data(entry: BibEntry) -> dict:
    links = []
    if entry.arxiv:
        links.append(f"[:material-file-document-outline: arXiv:{entry.arxiv}](https://arxiv.org/abs/{entry.arxiv})")
    if entry.code:
        links.append(f"[:material-code-braces: code]({entry.code})")
    return {
        "authors": entry.authors,
        "venue": entry.venue,
        "year": entry.year,
        "links": links,
        "title": title_of(entry),
    }


def lineage_data(survey: Survey, keys: list[str], page: str) -> list[dict]:
    out = []
    for k in keys:
        e = survey.entries.get(k)
        if e is not None:
            out.append(
                {
                    "name": paper_name(survey, k),
                    "href": link(page, paper_page(k)),
                    "title": title_of(e),
                    "authors": authors_of(e),
                    "year": e.year,
                }
            )
    return out


def badges(survey: Survey, note: Note, page: str) -> list[str]:
    m, vocab = note.meta, survey.config.vocabularies
    group = survey.config.group(m.group)
    out = [f"[{group.title}]({link(page, group_page(m.group))}){{ .atlas-badge .atlas-group }}"]
    for v in m.modality:
        out.append(
            f'[{v}]({link(page, modality_page(v))} "modality: {attr(vocab["modality"][v])}")'
            "{ .atlas-badge .atlas-modality }"
        )
    for facet in ("latent", "prior"):
        v = getattr(m, facet)
        out.append(
            f'[{facet}: {v}]({link(page, "table.md")} "{attr(vocab[facet][v])}"){{ .atlas-badge .atlas-{facet} }}'
        )
    for v in m.conditioning:
        out.append(
            f'[{v}]({link(page, "table.md")} "conditioning: {attr(vocab["conditioning"][v])}")'
            "{ .atlas-badge .atlas-conditioning }"
        )
    return out


def aside(survey: Survey, note: Note, shared: bool) -> str:
    """The facets a paper shares with our work (or where it differs), as an admonition."""
    comps = [c for c in survey.compare(note) if c.shared == shared]
    ours = survey.config.our_work
    name = ours.name.lower()
    if shared:
        title, kind = f"Facets shared with {name}", "success"
        lines = [f"**{c.facet}**: {', '.join(sorted(set(c.theirs) & set(c.ours)))}" for c in comps]
        lines = lines or [f"none of the profile's facets ({ours.summary})"]
    else:
        title, kind = f"Facets that differ from {name}", "note"
        lines = [f"**{c.facet}**: {', '.join(c.theirs)} here; {', '.join(c.ours)} in {name}" for c in comps]
        lines = lines or ["none: the difference lies in the method, as the prose says"]
    return render("aside.md.j2", kind=kind, title=title, lines=lines)


ASIDES = {"Similarity to our work": True, "Difference from our work": False}


def with_asides(body: str, survey: Survey, note: Note) -> str:
    """The body with the facet comparison right under its two comparison headings."""
    out, fence = [], None
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence and stripped.startswith(fence) else (fence or stripped[:3])
        out.append(line)
        heading = md.HEADING.match(line) if fence is None else None
        if heading and heading.group(2) in ASIDES:
            out += ["", aside(survey, note, ASIDES[heading.group(2)])]
    return "\n".join(out) + "\n"


def notebook_paths(survey: Survey, note: Note) -> list[str]:
    """The notebooks a paper's page links: its note's `notebook:` first, then every notebook whose
    header names the paper among those it illustrates (atlas.notebooks.declared_papers), by path."""
    from atlas.notebooks import declared_papers

    own = [note.meta.notebook] if note.meta.notebook else []
    named = [
        path
        for path in survey.inventory.notebooks
        if path not in own and note.key in declared_papers(survey.inventory.sources.get(path, ""))
    ]
    return own + named


def _notebook(path: str, page: str, notebooks: dict[str, Path]) -> dict:
    name = Path(path).stem
    data = {"path": path, "source": link(page, source_page(path)), "href": None, "title": name.replace("_", " ")}
    if name in notebooks:
        data["href"] = link(page, f"notebooks/{name}.ipynb")
    return data


GITHUB_SOURCE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+) (\S.*)$")  # owner/repo path/in/repo


def number_source(source: str) -> str:
    """A key number's source as Markdown: 'Sec. 4.1' as it is; 'owner/repo path' linked to the repository."""
    m = GITHUB_SOURCE.match(source)
    if not m:
        return cell(source)
    return f"[{m.group(1)}](https://github.com/{m.group(1)}) `{m.group(2)}`"


def numbers_data(note: Note) -> list[dict]:
    return [{"what": n.what, "value": str(n.value), "source": number_source(n.source)} for n in note.meta.numbers]


def module_summaries(survey: Survey, note: Note, page: str) -> list[dict]:
    """Each module of the note's implementation with the members it names (all of them when it names
    the module itself), each with its docstring's first paragraph, from the Survey's inventory.

    mkdocstrings renders a module's API once, on its API page; a member's name links there (an
    autorefs cross-reference, resolved to the member's anchor and checked by the strict build).
    """
    inventory = {mod.name: mod for mod in survey.inventory.modules}
    named: dict[str, list[str] | None] = {}  # module -> the member names the note lists (None: all)
    for dotted in note.meta.implementation:
        module, rest = module_of(dotted), dotted.split(".", 2)[2:]
        if not rest:
            named[module] = None
        elif named.get(module, []) is not None:
            named.setdefault(module, []).append(rest[0])
    out = []
    for module, names in named.items():
        mod = inventory.get(module)
        members = {mem.name: mem for mem in mod.members} if mod else {}
        chosen = list(members) if names is None else names
        out.append(
            {
                "dotted": f"reference_impls.{module}",
                "summary": mod.summary if mod else "",
                "api": link(page, api_page(module)),
                "members": [
                    {
                        "name": name,
                        "id": f"reference_impls.{module}.{name}",
                        "kind": members[name].kind if name in members else "",
                        "summary": members[name].summary if name in members else "",
                    }
                    for name in chosen
                ],
            }
        )
    return out


def paper_markdown(survey: Survey, note: Note, notebooks: dict[str, Path]) -> str:
    """The page of a paper that has a note."""
    key, m = note.key, note.meta
    page, entry = paper_page(key), survey.entries[key]
    ours = survey.config.our_work
    implementation = [
        {
            "dotted": dotted,
            "path": f"reference_impls/{module_of(dotted)}.py",
            "source": link(page, source_page(f"reference_impls/{module_of(dotted)}.py")),
            "api": link(page, api_page(module_of(dotted))),
        }
        for dotted in m.implementation
    ]
    return render(
        "paper.md.j2",
        title=f"{m.short}: {title_of(entry)}",
        search=paper_search_meta(),
        aliases=m.aliases,
        tags=[m.short, *m.aliases],
        relevance=survey.relevance(note),
        numbers=numbers_data(note),
        entry=entry_data(entry),
        badges=badges(survey, note, page),
        ours={"name": ours.name.lower(), "summary": ours.summary},
        comparison=survey.compare(note),
        notebooks=[_notebook(p, page, notebooks) for p in notebook_paths(survey, note)],
        body=with_asides(render_citations(note.body, survey, page), survey, note),
        implementation=implementation,
        modules=module_summaries(survey, note, page),
        tests=[{"path": t, "source": link(page, source_page(t))} for t in m.tests],
        builds_on=lineage_data(survey, m.builds_on, page),
        built_upon_by=lineage_data(survey, survey.built_upon_by(key), page),
        bibtex=entry.bibtex(drop=SITE_ONLY_FIELDS),
    )


def pending_markdown(survey: Survey, key: str) -> str:
    """The page of a paper of the bib that has no note yet."""
    entry, page = survey.entries[key], paper_page(key)
    return render(
        "pending.md.j2",
        title=f"{authors_of(entry)} {entry.year}: {title_of(entry)}",
        entry=entry_data(entry),
        contributing=link(page, "contributing.md"),
        built_upon_by=lineage_data(survey, survey.built_upon_by(key), page),
        bibtex=entry.bibtex(drop=SITE_ONLY_FIELDS),
    )
