"""Lineage rules: builds_on must point back in time and must not loop.

A paper can rest only on work that existed before it. Venues lag arXiv by up to a year, so a note
may build on a paper whose bib year is at most one year later than its own; more than that is a
mistake in builds_on (or in a year). A cycle in builds_on is always a mistake.
"""

from __future__ import annotations

from atlas.model import Survey
from atlas.problems import Code, Problem, rel

SLACK_YEARS = 1  # a venue year may trail the arXiv year of the work built upon by this much


def backwards(survey: Survey) -> list[Problem]:
    out = []
    for key, note in survey.notes.items():
        year = _year(survey, key)
        for other in note.meta.builds_on:
            later = _year(survey, other)
            if year is not None and later is not None and later > year + SLACK_YEARS:
                out.append(
                    Problem(
                        rel(note.path, survey.root),
                        note.key_lines.get("builds_on", 2),
                        f"builds_on '{other}' ({later}) is {later - year} years later than this paper ({year})",
                        f"only papers up to {year + SLACK_YEARS} in builds_on (is a year in the bib wrong?)",
                        Code.LINEAGE,
                    )
                )
    return out


def cycles(survey: Survey) -> list[Problem]:
    """One problem per cycle, reported at the note of the cycle that sorts first."""
    graph = {k: [b for b in n.meta.builds_on if b in survey.notes] for k, n in survey.notes.items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    found: list[list[str]] = []

    def visit(k: str, stack: list[str]) -> None:
        state[k] = 1
        stack.append(k)
        for b in graph[k]:
            if state.get(b) == 1:
                found.append(stack[stack.index(b) :])
            elif b not in state:
                visit(b, stack)
        stack.pop()
        state[k] = 2

    for k in sorted(graph):
        if k not in state:
            visit(k, [])
    out = []
    for cycle in found:
        i = cycle.index(min(cycle))
        cycle = cycle[i:] + cycle[:i]
        note = survey.notes[cycle[0]]
        loop = " -> ".join([*cycle, cycle[0]])
        out.append(
            Problem(
                rel(note.path, survey.root),
                note.key_lines.get("builds_on", 2),
                f"builds_on runs in a cycle: {loop}",
                "lineage that only points to earlier papers",
                Code.LINEAGE,
            )
        )
    return out


def _year(survey: Survey, key: str) -> int | None:
    entry = survey.entries.get(key)
    y = entry.year if entry else ""
    return int(y) if y.isdigit() else None
