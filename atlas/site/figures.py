"""The figures of the site, drawn from the notes' front matter: the timeline (year by prior family,
coloured by latent) and the lineage graph of builds_on (matplotlib, networkx)."""

from __future__ import annotations

import hashlib
import io
import json
from importlib.metadata import version
from pathlib import Path

from atlas.model import Note, Survey
from atlas.site.common import paper_name
from atlas.text import write_atomic

LATENT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#7f7f7f", "#ff7f0e", "#8c564b", "#e377c2"]


def _pyplot():
    """matplotlib's pyplot, set up once: no display, and SVG ids that do not change between builds."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "latent-atlas"
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def timeline_svg(survey: Survey) -> bytes:
    """Year on x, prior family on y, one labelled dot per note coloured by its latent."""
    plt = _pyplot()
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
            ax.annotate(
                n.meta.short, (year, y0 + dy), xytext=(5, 0), textcoords="offset points", va="center", fontsize=7
            )
    ax.set_yticks(range(len(priors)), priors)
    ax.set_ylim(-0.6, len(priors) - 0.4)
    ax.set_xticks(range(years[0], years[-1] + 1))
    ax.set_xlim(years[0] - 0.5, years[-1] + 0.9)
    ax.set_xlabel("year")
    ax.set_ylabel("prior family")
    ax.grid(axis="y", color="#dddddd", zorder=0)
    for v in [v for v in latents if any(n.meta.latent == v for n in survey.notes.values())]:
        ax.scatter([], [], color=colour[v], label=v)
    ax.legend(title="latent", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_title("Papers of the survey by year and prior family, coloured by latent", fontsize=10)
    return _svg(fig)


def lineage_graph(survey: Survey):
    import networkx as nx

    g = nx.DiGraph()
    for k in survey.notes:
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
    plt = _pyplot()
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
    nx.draw_networkx_edges(
        g,
        pos,
        ax=ax,
        edge_color="#999999",
        arrows=True,
        arrowsize=8,
        width=0.8,
        connectionstyle="arc3,rad=0.08",
        node_size=60,
    )
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=node_colour, edgecolors="#444444", linewidths=0.6, node_size=60)
    labels = {k: paper_name(survey, k) for k in g.nodes}
    for k, (x, y) in pos.items():
        ax.annotate(
            labels[k],
            (x, y),
            xytext=(5, 3),
            textcoords="offset points",
            fontsize=7,
            color="#000000" if k in survey.notes else "#777777",
        )
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


CACHE = "build/figures"  # under the survey's root, beside the executed notebooks


def figure_inputs(survey: Survey) -> str:
    """Everything the two figures are drawn from, with the drawing code and the library versions:
    the same text means the same SVGs."""
    data = {
        "vocabularies": {f: list(survey.config.vocabularies[f]) for f in ("prior", "latent")},
        "notes": [
            [k, n.meta.short, n.meta.prior, n.meta.latent, n.meta.builds_on] for k, n in sorted(survey.notes.items())
        ],
        "entries": [[k, str(e.year), paper_name(survey, k)] for k, e in sorted(survey.entries.items())],
        "code": Path(__file__).read_text(encoding="utf-8"),
        "versions": [version("matplotlib"), version("networkx")],
    }
    return json.dumps(data, sort_keys=True)


def figure_svgs(survey: Survey) -> dict[str, bytes]:
    """{"timeline.svg": ..., "lineage.svg": ...}, drawn again only when figure_inputs changed.

    The last drawing is kept in <root>/build/figures/ under the digest of its inputs (matplotlib's
    SVG is deterministic here: fixed hash salt, no date), so a build that changed no note reuses it.
    """
    digest = hashlib.sha256(figure_inputs(survey).encode("utf-8")).hexdigest()[:16]
    folder = Path(survey.root) / CACHE
    names = {"timeline.svg": timeline_svg, "lineage.svg": lineage_svg}
    out = {}
    for name, draw in names.items():
        cached = folder / f"{Path(name).stem}-{digest}.svg"
        try:
            out[name] = cached.read_bytes()
            continue
        except OSError:
            pass
        out[name] = draw(survey)
        try:
            for old in folder.glob(f"{Path(name).stem}-*.svg"):
                old.unlink()
            write_atomic(cached, out[name])
        except OSError:  # a cache that cannot be written (a read-only build/) only costs time
            pass
    return out
