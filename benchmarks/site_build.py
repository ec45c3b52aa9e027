"""Site build time: the real survey, and a copy grown to ten times as many papers.

    .venv/bin/python benchmarks/site_build.py

The grown copy is the repository in a temporary folder where every note is cloned 9 times under
new bib keys (`<key>x1` .. `<key>x9`), each with a new bib entry (the original's fields, a new
title); the clones keep the original's facets, lineage, implementation and tests. Both builds are
`mkdocs build --strict` through atlas.site.build (mkdocs in this process), notebooks cached as in a normal rebuild.
Anchors: the real build should take under 20 s on the 2-core development machine, and growing
the survey tenfold should grow the time linearly or better (ratio <= 10).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from atlas.bib import format_entries
from atlas.loader import load
from atlas.site import build

ROOT = Path(__file__).resolve().parents[1]

COPIES = 9
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "site", ".cache", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "overleaf"
)


def grow(root: Path) -> tuple[int, int]:
    """Clone every note COPIES times under new keys; returns (notes, bib entries) after growing."""
    survey, problems = load(root, deep=False)
    assert survey is not None and not problems, [str(p) for p in problems]
    extra = []
    for key, note in survey.notes.items():
        entry = survey.entries[key]
        text = note.path.read_text(encoding="utf-8")
        for i in range(1, COPIES + 1):
            new = f"{key}x{i}"
            fields = dict(entry.fields)
            fields["title"] = f"{fields.get('title', key)} (synthetic copy {i})"
            extra.append((entry.entry_type, new, fields))
            body = re.sub(r"^key: .*$", f"key: {new}", text, count=1, flags=re.M)
            body = re.sub(r"^short: (.*)$", lambda m, i=i: f"short: {m.group(1)} x{i}", body, count=1, flags=re.M)
            (root / "papers" / f"{new}.md").write_text(body, encoding="utf-8")
    bib = root / "bib" / "references.bib"
    bib.write_text(bib.read_text(encoding="utf-8") + "\n" + format_entries(extra), encoding="utf-8")
    grown, problems = load(root, deep=False)
    assert grown is not None and not problems, [str(p) for p in problems][:5]
    return len(grown.notes), len(grown.entries)


def timed_build(root: Path, out: Path) -> float:
    start = time.perf_counter()
    problems, log = build(root, out)
    seconds = time.perf_counter() - start
    if problems:
        sys.exit("\n".join(str(p) for p in problems))
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="atlas-site-bench-") as tmp:
        tmp = Path(tmp)
        survey, _ = load(ROOT, deep=False)
        real = timed_build(ROOT, tmp / "site-real")
        pages = sum(1 for _ in (tmp / "site-real").rglob("index.html"))
        print(
            f"real survey: {len(survey.notes)} notes, {len(survey.entries)} bib entries, {pages} pages: {real:.1f} s "
            f"(anchor: under 20 s)"
        )
        copy = shutil.copytree(ROOT, tmp / "grown", ignore=IGNORE)
        notes, entries = grow(copy)
        big = timed_build(copy, tmp / "site-grown")
        pages_big = sum(1 for _ in (tmp / "site-grown").rglob("index.html"))
        print(f"grown x{COPIES + 1}: {notes} notes, {entries} bib entries, {pages_big} pages: {big:.1f} s")
        ratio = big / real
        growth = notes / max(len(survey.notes), 1)
        print(
            f"ratio: {ratio:.2f} for {growth:.1f}x the notes "
            f"({'linear or better' if ratio <= growth else 'worse than linear'})"
        )


if __name__ == "__main__":
    main()
