"""The survey website, generated at build time from the loaded Survey.

`plan(root)` turns atlas.yml, the bib, the notes, reference_impls/ and the tests into the site's
generated pages (Markdown and figures, as {site path: content}) and its navigation;
docs/gen_site.py (a mkdocs-gen-files script) writes them into the build. Nothing here is written
by hand twice: every paper page, overview, table and figure comes from the Survey.

Pages (paths inside the site):
    index.md                         home: what the survey covers, how to use it, live counts
    papers/<key>.md                  one per bib entry; a full page when the paper has a note
    groups/<id>.md                   one per group of atlas.yml, with its intro
    modalities/<value>.md            one per modality that a note uses
    table.md                         the comparison table of every note, sortable by any column
    figures.md, figures/*.svg        the timeline and the lineage graph (matplotlib, networkx)
    pending.md                       papers of the bib without a note yet
    api/index.md, api/<module>.md    the API of every reference_impls module (mkdocstrings)
    source/<path>.md                 a source view of every module, test file and notebook

Citations in note bodies (`[@key]`, `[see @key, p. 3; @other]`, `@key`) become links to the
cited paper's page, "Author et al. (Year)" in text and "(Author et al., Year)" in brackets, with
the title on hover. A key that is not in the bib raises CitationError (`path:line: what; expected`).
"""

from __future__ import annotations

import ast
import functools
import io
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from atlas import markdown as md
from atlas.bib import SITE_ONLY_FIELDS, BibEntry, latex_to_text
from atlas.loader import BIB
from atlas.model import FACETS, Note, Survey
from atlas.related import closest_markdown
from atlas.related import site_markdown as site_related_markdown

NOTE_TAIL = "[@key] or @key with a key of the bib (write \\@ for a literal at sign)"
FACET_TITLES = {"modality": "Modality", "latent": "Latent", "prior": "Prior", "conditioning": "Conditioning"}


class CitationError(ValueError):
    """An unknown citation key; the message is one `path:line: what; expected` line."""


@dataclass
class SitePlan:
    files: dict[str, str | bytes] = field(default_factory=dict)  # site path -> content
    nav: list = field(default_factory=list)  # mkdocs nav structure


# ---------------------------------------------------------------------------------------------
# small helpers


def link(src: str, dest: str) -> str:
    """The relative link from site page `src` to site file `dest` (both paths inside docs)."""
    return posixpath.relpath(dest, posixpath.dirname(src) or ".")


def paper_page(key: str) -> str:
    return f"papers/{key}.md"


def source_page(path: str) -> str:
    """The generated source view of a repository file: reference_impls/vq.py -> source/reference_impls/vq.md."""
    return f"source/{posixpath.splitext(path)[0]}.md"


def api_page(module: str) -> str:
    return f"api/{module}.md"


@functools.lru_cache(maxsize=None)
def _decode(raw: str) -> str:
    return latex_to_text(raw) if raw else ""


@functools.lru_cache(maxsize=None)
def _short_authors(raw: str) -> str:
    return BibEntry("", "misc", {"author": raw}, 1).author_short


def title_of(entry: BibEntry) -> str:
    """title_of(entry), decoded once per distinct title (pylatexenc is slow)."""
    return _decode(entry.get("title") or "")


def authors_of(entry: BibEntry) -> str:
    """authors_of(entry) ('Lee et al.'), decoded once per distinct author list."""
    return _short_authors(entry.get("author") or "")


def _attr(text: str) -> str:
    """Text for a Markdown link title (no double quotes, no newlines)."""
    return re.sub(r"\s+", " ", text.replace('"', "'")).strip()


def _yaml_str(text: str) -> str:
    """A YAML single-quoted scalar (no escapes to worry about)."""
    return "'" + re.sub(r"\s+", " ", text).strip().replace("'", "''") + "'"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _module_of(dotted: str) -> str:
    """reference_impls.clip.rerank -> clip (the module file under reference_impls/)."""
    return dotted.split(".")[1]


def paper_name(survey: Survey, key: str) -> str:
    note = survey.notes.get(key)
    return note.meta.short if note else authors_of(survey.entries[key]) + " " + survey.entries[key].year


# ---------------------------------------------------------------------------------------------
# citations


BRACKET = re.compile(r"\[([^\[\]]*@[^\[\]]*)\](?![(\[:])")


def _cite_link(survey: Survey, page: str, key: str, text: str) -> str:
    entry = survey.entries[key]
    return f'[{text}]({link(page, paper_page(key))} "{_attr(title_of(entry))}")'


def render_citations(text: str, survey: Survey, page: str, where: str, first_line: int) -> str:
    """Replace every citation of a note's Markdown with links; code and math are left alone.

    `where` and `first_line` name the note file and the file line of `text`'s first line, for
    the error of an unknown key.
    """
    prose = md.scan(text).prose  # code and math blanked, same length as text
    edits: list[tuple[int, int, str]] = []

    def check(key: str, pos: int) -> None:
        if key not in survey.entries:
            line = first_line + prose.count("\n", 0, pos)
            raise CitationError(f"{where}:{line}: citation '@{key}' is not a key of {BIB}; {NOTE_TAIL}")

    def cites_in(start: int, end: int) -> list[tuple[int, int, str]]:
        out = []
        for m in md.CITE.finditer(prose, start, end):
            key = m.group(1).rstrip(".:,;?!/-~#$%&+<>")
            out.append((m.start(), m.start(1) + len(key), key))
        return out

    taken: list[tuple[int, int]] = []
    for b in BRACKET.finditer(prose):
        inner_start, inner_end = b.start(1), b.end(1)
        items, pos, ok = [], inner_start, True
        for part in prose[inner_start:inner_end].split(";"):
            end = pos + len(part)
            found = cites_in(pos, end)
            if len(found) != 1:
                ok = False
                break
            items.append((pos, end, found[0]))
            pos = end + 1
        if not ok:
            continue
        rendered = []
        for start, end, (at, kend, key) in items:
            check(key, at)
            entry = survey.entries[key]
            suppress = at > start and text[at - 1] == "-"
            prefix = text[start : at - 1 if suppress else at].strip()
            locator = text[kend:end].strip()
            label = entry.year if suppress else f"{authors_of(entry)}, {entry.year}"
            piece = _cite_link(survey, page, key, label)
            if prefix:
                piece = f"{prefix} {piece}"
            if locator:
                piece += locator if locator.startswith(",") else f", {locator}"
            rendered.append(piece)
        edits.append((b.start(), b.end(), "(" + "; ".join(rendered) + ")"))
        taken.append((b.start(), b.end()))
    for at, kend, key in cites_in(0, len(prose)):
        if any(s <= at < e for s, e in taken):
            continue
        check(key, at)
        entry = survey.entries[key]
        edits.append((at, kend, _cite_link(survey, page, key, f"{authors_of(entry)} ({entry.year})")))
    for m in re.finditer(r"\\@", prose):
        if not any(s <= m.start() < e for s, e, _ in edits):
            edits.append((m.start(), m.end(), "&#64;"))
    out = text
    for start, end, new in sorted(edits, reverse=True):
        out = out[:start] + new + out[end:]
    return out


# ---------------------------------------------------------------------------------------------
# pieces of pages


def _badges(survey: Survey, note: Note, page: str) -> str:
    m = note.meta
    group = survey.config.group(m.group)
    parts = [f'[{group.title}]({link(page, f"groups/{m.group}.md")}){{ .atlas-badge .atlas-group }}']
    for v in m.modality:
        parts.append(f'[{v}]({link(page, f"modalities/{v}.md")} "modality: {_attr(survey.config.vocabularies["modality"][v])}"){{ .atlas-badge .atlas-modality }}')
    for facet in ("latent", "prior"):
        v = getattr(m, facet)
        parts.append(f'[{facet}: {v}]({link(page, "table.md")} "{_attr(survey.config.vocabularies[facet][v])}"){{ .atlas-badge .atlas-{facet} }}')
    for v in m.conditioning:
        parts.append(f'[{v}]({link(page, "table.md")} "conditioning: {_attr(survey.config.vocabularies["conditioning"][v])}"){{ .atlas-badge .atlas-conditioning }}')
    return " ".join(parts)


def _comparison_table(survey: Survey, note: Note) -> str:
    ours = survey.config.our_work
    rows = ["| facet | this paper | " + ours.name.lower() + " | in common |", "|---|---|---|---|"]
    for c in survey.compare(note):
        mark = "shared" if c.shared else "differs"
        rows.append(f"| {c.facet} | {', '.join(c.theirs)} | {', '.join(c.ours)} | {mark} |")
    return "\n".join(rows)


def _aside(survey: Survey, note: Note, shared: bool) -> str:
    comps = [c for c in survey.compare(note) if c.shared == shared]
    ours = survey.config.our_work
    if shared:
        title = f"Facets shared with {ours.name.lower()}"
        if comps:
            lines = [f"- **{c.facet}**: {', '.join(sorted(set(c.theirs) & set(c.ours)))}" for c in comps]
        else:
            lines = [f"- none of the profile's facets ({ours.summary})"]
        kind = "success"
    else:
        title = f"Facets that differ from {ours.name.lower()}"
        if comps:
            lines = [f"- **{c.facet}**: {', '.join(c.theirs)} here; {', '.join(c.ours)} in {ours.name.lower()}" for c in comps]
        else:
            lines = ["- none: the difference lies in the method, as the prose says"]
        kind = "note"
    body = "\n".join("    " + ln for ln in lines)
    return f'!!! {kind} atlas-compare "{title}"\n\n{body}\n'


def _with_asides(body: str, survey: Survey, note: Note) -> str:
    """Insert the facet comparison right under the two comparison headings of the body."""
    out, fence = [], None
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = None if fence and stripped.startswith(fence) else (fence or stripped[:3])
        out.append(line)
        if fence is None and md.HEADING.match(line):
            title = md.HEADING.match(line).group(2)
            if title == "Similarity to our work":
                out += ["", _aside(survey, note, True)]
            elif title == "Difference from our work":
                out += ["", _aside(survey, note, False)]
    return "\n".join(out) + "\n"


def _fence(code: str, lang: str, extra: str = "") -> str:
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", code)), default=0) + 1)
    return f"{ticks} {lang}{(' ' + extra) if extra else ''}\n{code.rstrip()}\n{ticks}\n"


def _lineage_list(survey: Survey, keys: list[str], page: str, none: str) -> str:
    if not keys:
        return none
    out = []
    for k in keys:
        e = survey.entries.get(k)
        if e is None:
            continue
        out.append(f"- [{paper_name(survey, k)}]({link(page, paper_page(k))}): {title_of(e)} ({authors_of(e)}, {e.year})")
    return "\n".join(out)


def _entry_head(entry: BibEntry) -> str:
    lines = [f"**{', '.join(entry.authors)}**  ", f"*{entry.venue}*, {entry.year}" if entry.venue else entry.year]
    links = []
    if entry.arxiv:
        links.append(f"[:material-file-document-outline: arXiv:{entry.arxiv}](https://arxiv.org/abs/{entry.arxiv})")
    if entry.code:
        links.append(f"[:material-code-braces: code]({entry.code})")
    if links:
        lines[-1] += "  "
        lines.append(" · ".join(links))
    return "\n".join(lines)


def _bibtex(entry: BibEntry) -> str:
    return "## BibTeX\n\n" + _fence(entry.bibtex(drop=SITE_ONLY_FIELDS), "bibtex") + "\n"


def paper_markdown(survey: Survey, note: Note, notebooks: dict[str, Path]) -> str:
    """The page of a paper that has a note."""
    key, m = note.key, note.meta
    page = paper_page(key)
    entry = survey.entries[key]
    where = f"papers/{note.path.name}"
    out = [f"---\ntitle: {_yaml_str(m.short + ': ' + title_of(entry))}\n---\n", f"# {m.short}: {title_of(entry)}\n", _entry_head(entry), "",
           _badges(survey, note, page), ""]
    out += [f"**Compared with {survey.config.our_work.name.lower()}** ({survey.config.our_work.summary}):\n", _comparison_table(survey, note), ""]
    if m.notebook:
        name = Path(m.notebook).stem
        src = link(page, source_page(m.notebook))
        if name in notebooks:
            out.append(f'!!! example "Notebook"\n\n    [Open the notebook {name.replace("_", " ")}]({link(page, f"notebooks/{name}.ipynb")}), '
                       f"executed when the site was built ([source]({src})).\n")
        else:
            out.append(f'!!! example "Notebook"\n\n    [{m.notebook}]({src}) (source).\n')
    body = render_citations(note.body, survey, page, where, note.body_line)
    out.append(_with_asides(body, survey, note))
    out.append("## Reference implementation\n")
    for dotted in m.implementation:
        module = _module_of(dotted)
        mod_path = f"reference_impls/{module}.py"
        out.append(f"- `{dotted}`: [source of {mod_path}]({link(page, source_page(mod_path))}) · "
                   f"[API of the module]({link(page, api_page(module))})")
    for t in m.tests:
        out.append(f"- tests: [{t}]({link(page, source_page(t))})")
    out.append("")
    for dotted in m.implementation:
        out.append(f"::: {dotted}\n    options:\n      heading_level: 3\n")
    out.append("## Lineage\n")
    out.append("### Builds on\n")
    out.append(_lineage_list(survey, m.builds_on, page, "No earlier paper of the survey.") + "\n")
    out.append("### Built upon by\n")
    out.append(_lineage_list(survey, survey.built_upon_by(key), page, "No later paper of the survey yet.") + "\n")
    out.append(_bibtex(entry))
    return "\n".join(out)


def pending_markdown(survey: Survey, key: str) -> str:
    """The page of a paper of the bib that has no note yet."""
    entry = survey.entries[key]
    page = paper_page(key)
    out = [f"---\ntitle: {_yaml_str(authors_of(entry) + ' ' + entry.year + ': ' + title_of(entry))}\n---\n", f"# {title_of(entry)}\n", _entry_head(entry), "",
           f'!!! info "No note yet"\n\n    This paper is in the bib but has no note yet; '
           f'see [how to add one]({link(page, "contributing.md")}).\n']
    users = survey.built_upon_by(key)
    if users:
        out.append("## Built upon by\n\n" + _lineage_list(survey, users, page, "") + "\n")
    out.append(_bibtex(entry))
    return "\n".join(out)


def _first_paragraph(survey: Survey, note: Note, page: str) -> str:
    summary = note.sections.get("Summary", "")
    para = summary.strip().split("\n\n")[0]
    offset = note.body.find(para) if para else -1
    line = note.body_line + (note.body.count("\n", 0, offset) if offset >= 0 else 0)
    return render_citations(para, survey, page, f"papers/{note.path.name}", line)


def _paper_list(survey: Survey, notes: list[Note], page: str) -> str:
    out = []
    for n in notes:
        e = survey.entries[n.key]
        out.append(f"### [{n.meta.short}]({link(page, paper_page(n.key))})\n")
        out.append(f"*{title_of(e)}*, {authors_of(e)} ({e.year}) · latent **{n.meta.latent}**, prior **{n.meta.prior}**, "
                   f"modality {', '.join(n.meta.modality)}\n")
        out.append(_first_paragraph(survey, n, page) + "\n")
    return "\n".join(out)


def group_markdown(survey: Survey, gid: str) -> str:
    g = survey.config.group(gid)
    page = f"groups/{gid}.md"
    notes = survey.in_group(gid)
    out = [f"# {g.title}\n", g.intro + "\n", f"{len(notes)} paper{'s' * (len(notes) != 1)} with a note, oldest first.\n"]
    out.append(_paper_list(survey, notes, page) if notes else "No note in this group yet.\n")
    return "\n".join(out)


def modality_markdown(survey: Survey, value: str) -> str:
    page = f"modalities/{value}.md"
    notes = sorted((n for n in survey.notes.values() if value in n.meta.modality), key=lambda n: (survey.entries[n.key].year, n.key))
    desc = survey.config.vocabularies["modality"][value]
    out = [f"# Modality: {value}\n", f"{desc[0].upper() + desc[1:]}. {len(notes)} paper{'s' * (len(notes) != 1)}, oldest first.\n"]
    out.append(_paper_list(survey, notes, page))
    return "\n".join(out)


def table_markdown(survey: Survey) -> str:
    page = "table.md"
    notes = sorted(survey.notes.values(), key=lambda n: (survey.entries[n.key].year, n.key))
    out = ["# Comparison table\n",
           f"Every paper with a note ({len(notes)}), by its survey facets. Click a column header to sort "
           "by it; click again to reverse.\n",
           '<div class="atlas-sortable" markdown>\n',
           "| Paper | Relevance | Modality | Latent | Prior | Conditioning | Year | Implementation | Tests |",
           "|---|---|---|---|---|---|---|---|---|"]
    for n in notes:
        e, m = survey.entries[n.key], n.meta
        impl = ", ".join(f"[{d.removeprefix('reference_impls.')}]({link(page, api_page(_module_of(d)))})" for d in m.implementation)
        tests = ", ".join(f"[{Path(t).stem}]({link(page, source_page(t))})" for t in m.tests)
        out.append(f"| [{_cell(m.short)}]({link(page, paper_page(n.key))} \"{_attr(title_of(e))}\") | {survey.relevance(n)} | {', '.join(m.modality)} | {m.latent} | "
                   f"{m.prior} | {', '.join(m.conditioning)} | {e.year} | {impl} | {tests} |")
    out.append("\n</div>\n")
    out.append("## Facet values\n")
    for facet in FACETS:
        out.append(f"**{FACET_TITLES[facet]}**\n")
        for v, d in survey.config.vocabularies[facet].items():
            out.append(f"- `{v}`: {d}")
        out.append("")
    return "\n".join(out)


def pending_list_markdown(survey: Survey) -> str:
    page = "pending.md"
    out = ["# Papers without a note yet\n",
           f"{len(survey.pending)} paper{'s' * (len(survey.pending) != 1)} of the bib have no note yet. "
           f"Each has a page with its BibTeX; [contributing]({link(page, 'contributing.md')}) says how to add a note.\n"]
    for k in survey.pending:
        e = survey.entries[k]
        out.append(f"- [{title_of(e)}]({link(page, paper_page(k))}) ({authors_of(e)}, {e.year})")
    if not survey.pending:
        out.append("Every paper of the bib has a note.")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# repository facts: modules, tests, notebooks


def modules(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "reference_impls").glob("*.py") if p.stem != "__init__")


def test_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "tests" / "reference_impls").glob("test_*.py"))


def count_tests(root: Path, files: list[str]) -> int:
    total = 0
    for f in files:
        try:
            tree = ast.parse((root / f).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                total += 1
    return total


def notebook_sources(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "docs" / "notebooks").glob("*.py"))


def source_markdown(root: Path, path: str, survey: Survey) -> str:
    page = source_page(path)
    code = (root / path).read_text(encoding="utf-8")
    users = sorted(k for k, n in survey.notes.items()
                   if path in n.meta.tests or n.meta.notebook == path
                   or any(f"reference_impls/{_module_of(d)}.py" == path for d in n.meta.implementation))
    out = [f"---\ntitle: {path}\nsearch:\n  exclude: true\n---\n", f"# `{path}`\n"]
    if users:
        out.append("Used by: " + ", ".join(f"[{_cell(paper_name(survey, k))}]({link(page, paper_page(k))})" for k in users) + "\n")
    if path.startswith("reference_impls/"):
        out.append(f"[API of this module]({link(page, api_page(Path(path).stem))})\n")
    out.append(_fence(code, "python"))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# figures


LATENT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#8c564b", "#e377c2"]


def _svg(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def timeline_svg(survey: Survey) -> bytes:
    """Year on x, prior family on y, one labelled dot per note coloured by its latent."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "latent-atlas"
    import matplotlib.pyplot as plt

    priors = list(survey.config.vocabularies["prior"])
    latents = list(survey.config.vocabularies["latent"])
    colour = {v: LATENT_COLOURS[i % len(LATENT_COLOURS)] for i, v in enumerate(latents)}
    cells: dict[tuple[int, str], list[Note]] = {}
    for n in sorted(survey.notes.values(), key=lambda n: n.key):
        cells.setdefault((int(survey.entries[n.key].year), n.meta.prior), []).append(n)
    years = sorted({y for y, _ in cells}) or [2020]
    fullest = max((len(v) for v in cells.values()), default=1)
    height = max(3.5, len(priors) * max(0.8, 0.17 * fullest) + 1.2)  # ~12 pt between labels of the fullest cell
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * (years[-1] - years[0] + 1)), height))
    for (year, prior), notes in cells.items():
        y0 = priors.index(prior)
        k = len(notes)
        for i, n in enumerate(notes):
            dy = ((k - 1) / 2 - i) * min(0.85 / max(k, 1), 0.22)
            ax.scatter(year, y0 + dy, s=36, color=colour[n.meta.latent], zorder=3, edgecolors="white", linewidths=0.5)
            ax.annotate(n.meta.short, (year, y0 + dy), xytext=(5, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(range(len(priors)), priors)
    ax.set_ylim(-0.6, len(priors) - 0.4)
    ax.set_xticks(range(years[0], years[-1] + 1))
    ax.set_xlim(years[0] - 0.5, years[-1] + 0.9)
    ax.set_xlabel("year")
    ax.set_ylabel("prior family")
    ax.grid(axis="y", color="#dddddd", zorder=0)
    used = [v for v in latents if any(n.meta.latent == v for n in survey.notes.values())]
    for v in used:
        ax.scatter([], [], color=colour[v], label=v)
    ax.legend(title="latent", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title("Papers of the survey by year and prior family, coloured by latent", fontsize=10)
    return _svg(fig)


def lineage_graph(survey: Survey):
    import networkx as nx

    g = nx.DiGraph()
    for k, n in survey.notes.items():
        g.add_node(k, year=int(survey.entries[k].year), noted=True)
    for k, n in survey.notes.items():
        for parent in n.meta.builds_on:
            if parent in survey.entries:
                if parent not in g:
                    g.add_node(parent, year=int(survey.entries[parent].year), noted=False)
                g.add_edge(parent, k)
    return g


def lineage_svg(survey: Survey) -> bytes:
    """The builds_on graph: an arrow from each paper to the later papers that build on it."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "latent-atlas"
    import matplotlib.pyplot as plt
    import networkx as nx

    g = lineage_graph(survey)
    by_year: dict[int, list[str]] = {}
    for k, data in sorted(g.nodes(data=True), key=lambda kv: kv[0]):
        by_year.setdefault(data["year"], []).append(k)
    pos: dict[str, tuple[int, float]] = {}
    tallest = max((len(v) for v in by_year.values()), default=1)
    for year in sorted(by_year):  # each year's papers ordered by the mean height of their parents
        keys = by_year[year]
        def height_of(k: str) -> float:
            ys = [pos[p][1] for p in g.predecessors(k) if p in pos]
            return sum(ys) / len(ys) if ys else 0.0
        keys.sort(key=lambda k: (-height_of(k), k))
        for i, k in enumerate(keys):
            pos[k] = (year, (len(keys) - 1) / 2 - i)
    years = sorted(by_year) or [2020]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * (years[-1] - years[0] + 1)), max(3.5, 0.45 * tallest + 1)))
    latents = list(survey.config.vocabularies["latent"])
    colour = {v: LATENT_COLOURS[i % len(LATENT_COLOURS)] for i, v in enumerate(latents)}
    node_colour = [colour[survey.notes[k].meta.latent] if k in survey.notes else "#ffffff" for k in g.nodes]
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#999999", arrows=True, arrowsize=8, width=0.8,
                           connectionstyle="arc3,rad=0.08", node_size=60)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=node_colour, edgecolors="#444444", linewidths=0.6, node_size=60)
    labels = {k: paper_name(survey, k) for k in g.nodes}
    for k, (x, y) in pos.items():
        ax.annotate(labels[k], (x, y), xytext=(5, 3), textcoords="offset points", fontsize=7,
                    color="#000000" if k in survey.notes else "#777777")
    ax.set_xticks(years)
    ax.set_xlim(years[0] - 0.4, years[-1] + 0.9)
    ax.tick_params(left=False, labelleft=False, bottom=True, labelbottom=True)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("year")
    for v in latents:
        if any(n.meta.latent == v for n in survey.notes.values()):
            ax.scatter([], [], color=colour[v], edgecolors="#444444", label=v)
    if any(k not in survey.notes for k in g.nodes):
        ax.scatter([], [], color="#ffffff", edgecolors="#444444", label="no note yet")
    ax.legend(title="latent", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title("Lineage: an arrow from a paper to each later paper that builds on it", fontsize=10)
    return _svg(fig)


def figures_markdown(survey: Survey) -> str:
    g = lineage_graph(survey)
    return "\n".join([
        "# Figures\n",
        "Both figures are drawn at build time from the notes' front matter.\n",
        "## Timeline\n",
        "Each dot is a paper with a note: its year, the family of its generative prior, and (colour) "
        "the kind of latent space the prior works in.\n",
        "![Timeline: papers by year and prior family, coloured by latent](figures/timeline.svg)\n",
        "## Lineage\n",
        f"The `builds_on` relation of the notes: {g.number_of_nodes()} papers, {g.number_of_edges()} links. "
        "Grey labels are papers of the bib without a note yet. Each paper page lists the same lineage "
        "both ways.\n",
        "![Lineage graph from builds_on](figures/lineage.svg)\n",
    ])


# ---------------------------------------------------------------------------------------------
# home and API reference


def home_markdown(survey: Survey, root: Path, n_notebooks: int) -> str:
    mods, tests = modules(root), test_files(root)
    n_tests = count_tests(root, tests)
    groups = survey.config.groups
    ours = survey.config.our_work
    out = [
        "---\ntitle: Home\n---\n",
        "# Latent Atlas\n",
        "A survey of generative models over learned latent spaces: discrete tokenizers (VQ-VAE, VQGAN, "
        "residual quantisation), the autoregressive, masked and discrete-diffusion priors fitted over their "
        "tokens, and continuous and latent diffusion. It is written for a paper whose own method is "
        f"{ours.summary}; every paper is compared with that profile.\n",
        '<div class="atlas-counts" markdown>\n',
        f"| papers in the bib | notes | modules | test files (tests) | notebooks |",
        "|---|---|---|---|---|",
        f"| {len(survey.entries)} | {len(survey.notes)} | {len(mods)} | {len(tests)} ({n_tests}) | {n_notebooks} |",
        "\n</div>\n",
        "Each paper has a note in our own words, a minimal PyTorch reference implementation of its core "
        "mechanism under `reference_impls/`, and tests that fail if that mechanism is wrong.\n",
        "## How to use this site\n",
        "- **Search** (top bar) finds papers, mechanisms and functions by name or topic.",
        "- **[Comparison table](table.md)**: every paper by modality, latent, prior, conditioning, year, "
        "implementation and tests; sort by any column.",
        "- **[Figures](figures.md)**: the timeline of prior families and the lineage graph.",
        "- **[Related work](related.md)**: the related-work section of our paper at each length, with its LaTeX.",
        "- **Groups**, the sections of the related work:",
    ]
    for g in groups:
        out.append(f"    - [{g.title}](groups/{g.id}.md) ({len(survey.in_group(g.id))})")
    used = [v for v in survey.config.vocabularies["modality"] if any(v in n.meta.modality for n in survey.notes.values())]
    out.append("- **Modalities**: " + ", ".join(f"[{v}](modalities/{v}.md)" for v in used) + ".")
    out += [
        "- **A paper page** gives the bibliographic record with a copyable BibTeX entry, the facets as "
        "badges, what the paper shares with our work and where it differs, the note, the API of its "
        "reference implementation with links to the source and the tests, and its lineage both ways.",
        "- **[API reference](api/index.md)** of every module of `reference_impls`.",
        f"- **[Pending papers](pending.md)** ({len(survey.pending)}): in the bib, without a note yet.",
        "- **[Contributing](contributing.md)**: how to add a paper.\n",
        "Every page except the hand-written ones is generated from `atlas.yml`, `bib/references.bib` and "
        "`papers/*.md` when the site is built (`atlas site` or `atlas build`).\n",
        render_citations(closest_markdown(survey), survey, "index.md", "related/", 1),  # issue 12
        "## At a glance\n",
        "[![Timeline: papers by year and prior family, coloured by latent](figures/timeline.svg)](figures.md)\n",
    ]
    return "\n".join(out)


def _docstring_summary(root: Path, module: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse((root / "reference_impls" / f"{module}.py").read_text(encoding="utf-8"))) or ""
    except (SyntaxError, UnicodeDecodeError, OSError):
        return ""
    return doc.strip().split("\n")[0] if doc else ""


def api_index_markdown(survey: Survey, root: Path) -> str:
    page = "api/index.md"
    users: dict[str, list[str]] = {}
    for k, n in survey.notes.items():
        for d in n.meta.implementation:
            users.setdefault(_module_of(d), []).append(k)
    out = ["# API reference\n", "Every module of `reference_impls`, the package of reference implementations.\n",
           "| module | what | papers |", "|---|---|---|"]
    for mod in modules(root):
        papers = ", ".join(f"[{_cell(paper_name(survey, k))}]({link(page, paper_page(k))})" for k in sorted(set(users.get(mod, []))))
        out.append(f"| [`{mod}`]({link(page, api_page(mod))}) | {_cell(_docstring_summary(root, mod))} | {papers} |")
    return "\n".join(out) + "\n"


def api_markdown(survey: Survey, root: Path, module: str) -> str:
    page = api_page(module)
    path = f"reference_impls/{module}.py"
    keys = sorted({k for k, n in survey.notes.items() for d in n.meta.implementation if _module_of(d) == module})
    tests = [t for t in test_files(root) if Path(t).stem == f"test_{module}"]
    out = [f"---\ntitle: reference_impls.{module}\n---\n", f"# `reference_impls.{module}`\n",
           f"[Source]({link(page, source_page(path))})"]
    for t in tests:
        out[-1] += f" · [tests: {t}]({link(page, source_page(t))})"
    if keys:
        out[-1] += " · papers: " + ", ".join(f"[{_cell(paper_name(survey, k))}]({link(page, paper_page(k))})" for k in keys)
    out.append(f"\n::: reference_impls.{module}\n    options:\n      show_root_heading: false\n      heading_level: 2\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# the whole site


def plan(survey: Survey, notebooks: dict[str, Path] | None = None, figures: bool = True) -> SitePlan:
    """Every generated page and figure, and the navigation. Raises CitationError on an unknown key."""
    root = survey.root
    notebooks = notebooks or {}
    sp = SitePlan()
    f = sp.files
    for key in survey.entries:
        note = survey.notes.get(key)
        f[paper_page(key)] = paper_markdown(survey, note, notebooks) if note else pending_markdown(survey, key)
    for g in survey.config.groups:
        f[f"groups/{g.id}.md"] = group_markdown(survey, g.id)
    used = [v for v in survey.config.vocabularies["modality"] if any(v in n.meta.modality for n in survey.notes.values())]
    for v in used:
        f[f"modalities/{v}.md"] = modality_markdown(survey, v)
    f["table.md"] = table_markdown(survey)
    f["pending.md"] = pending_list_markdown(survey)
    f["figures.md"] = figures_markdown(survey)
    if figures:
        f["figures/timeline.svg"] = timeline_svg(survey)
        f["figures/lineage.svg"] = lineage_svg(survey)
    mods = modules(root)
    f["api/index.md"] = api_index_markdown(survey, root)
    for mod in mods:
        f[api_page(mod)] = api_markdown(survey, root, mod)
    sources = [f"reference_impls/{m}.py" for m in mods] + test_files(root) + notebook_sources(root)
    sources += sorted({t for n in survey.notes.values() for t in n.meta.tests if (root / t).is_file()} - set(sources))
    for path in sources:
        f[source_page(path)] = source_markdown(root, path, survey)
    for name in notebooks:
        f[f"notebooks/{name}.ipynb"] = Path(notebooks[name]).read_bytes()
    f["index.md"] = home_markdown(survey, root, len(notebook_sources(root)))
    # issue 12: the related-work page (atlas.related builds the Markdown, the export the LaTeX)
    from atlas.export import section_latex

    f["related.md"] = render_citations(site_related_markdown(survey, lambda length: section_latex(survey, length)),
                                       survey, "related.md", "related/", 1)
    sp.nav = navigation(survey, notebooks)
    return sp


def _questions(root: Path) -> list:
    qdir = root / "docs" / "questions"
    if not qdir.is_dir():
        return []
    out = []
    pages = sorted(qdir.glob("*.md"), key=lambda p: (p.name != "index.md", p.name))
    for p in pages:
        first = next((ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), None)
        title = first[2:].strip() if first else p.stem.replace("_", " ").replace("-", " ").capitalize()
        out.append({title: f"questions/{p.name}"})
    return out


def navigation(survey: Survey, notebooks: dict[str, Path]) -> list:
    nav: list = [{"Home": "index.md"}, {"Related work": "related.md"}, {"Comparison table": "table.md"}, {"Figures": "figures.md"}]
    groups = []
    for g in survey.config.groups:
        items = [{"Overview": f"groups/{g.id}.md"}]
        items += [{n.meta.short: paper_page(n.key)} for n in survey.in_group(g.id)]
        groups.append({g.title: items})
    nav.append({"Papers": groups + [{"Pending papers": "pending.md"}]})
    used = [v for v in survey.config.vocabularies["modality"] if any(v in n.meta.modality for n in survey.notes.values())]
    nav.append({"Modalities": [{v: f"modalities/{v}.md"} for v in used]})
    questions = _questions(survey.root)
    if questions:
        nav.append({"Questions": questions})
    if notebooks:
        nav.append({"Notebooks": [{name.replace("_", " "): f"notebooks/{name}.ipynb"} for name in sorted(notebooks)]})
    nav.append({"API reference": [{"Overview": "api/index.md"}] + [{m: api_page(m)} for m in modules(survey.root)]})
    nav.append({"Contributing": "contributing.md"})
    return nav


def check_citations(survey: Survey) -> None:
    """Raise CitationError for the first unknown citation key of any note (before slow work)."""
    for note in survey.notes.values():
        render_citations(note.body, survey, paper_page(note.key), f"papers/{note.path.name}", note.body_line)


# ---------------------------------------------------------------------------------------------
# building


MKDOCS_ENV = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
_LOG = re.compile(r"^(ERROR|WARNING)\s*-\s+(.*)$")
_PROBLEM = re.compile(r"^(\S+?):(\d+): (.*?)(?:; (.*))?$")


def mkdocs_problems(output: str) -> list:
    """The warnings and errors of a mkdocs build log, as Problems (one line each)."""
    from atlas.problems import Problem

    out: list[Problem] = []
    in_error = False
    for raw in output.splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", raw).rstrip()
        m = _LOG.match(line)
        text = m.group(2).strip() if m else (line.strip() if in_error else "")
        in_error = bool(m and m.group(1) == "ERROR") or (in_error and not m and bool(line.strip()))
        if not text or text.startswith("Aborted with"):
            continue
        p = _PROBLEM.match(text)
        if p and not text.startswith(("http", "Doc file")):
            out.append(Problem(p.group(1), int(p.group(2)), p.group(3), p.group(4) or ""))
        elif m:
            out.append(Problem("mkdocs.yml", 1, f"mkdocs build: {text}", "a build without warnings (mkdocs build --strict)"))
    return out


def build(root: Path, site_dir: Path | None = None) -> tuple[list, str]:
    """`mkdocs build --strict` of the survey at root into site_dir (default root/site).

    Returns (problems, the full log); problems is empty when the build succeeded with no warning.
    """
    import os
    import subprocess
    import sys

    from atlas.problems import Problem

    root = Path(root).resolve()
    target = Path(site_dir).resolve() if site_dir else root / "site"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "-f", str(root / "mkdocs.yml"), "-d", str(target)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env={**os.environ, **MKDOCS_ENV})
    log = proc.stdout + proc.stderr
    problems = mkdocs_problems(log)
    if proc.returncode != 0 and not problems:
        last = next((ln for ln in reversed(log.splitlines()) if ln.strip()), "no output")
        problems = [Problem("mkdocs.yml", 1, f"mkdocs build failed ({last.strip()})", "a build that exits 0")]
    return problems, log
