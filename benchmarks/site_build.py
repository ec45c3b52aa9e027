"""Site build time: a cold build (no notebook output yet), a warm build (nothing changed), the
notebooks' serial run time, and optionally a copy grown to ten times as many papers.

    .venv/bin/python benchmarks/site_build.py [--grown]

Every build is `mkdocs build --strict` through atlas.site.build (mkdocs in this process) of a copy
of the repository in a temporary folder, timed per stage (load, notebooks, pages, mkdocs) as
`atlas site` shows them. Anchors, on the 2-core development machine:

- warm build under 10 s (the edit-and-look loop);
- the notebooks' part of the cold build at most 0.6 times their serial run time (parallel runs);
- with --grown, growing the survey tenfold grows the warm build linearly or better (ratio <= 10).

The serial notebook time is measured when atlas.notebooks.run_all takes `jobs` (parallel runs).
"""

from __future__ import annotations

import inspect
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from atlas.bib import format_entries
from atlas.loader import load
from atlas.progress import Stages
from atlas.site import build

ROOT = Path(__file__).resolve().parents[1]

COPIES = 9
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "site", "build", ".cache", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis"
)
STAGES = ["load", "notebooks", "pages", "mkdocs"]


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


def timed_build(root: Path, out: Path) -> tuple[float, dict[str, float]]:
    """(seconds, seconds per stage) of one build of root into out, as `atlas site` runs it."""
    stages = Stages("build", STAGES, quiet=True)
    start = time.perf_counter()
    stages.stage("load")
    survey, problems = load(root, deep=False)
    if not problems:
        problems, _log = build(root, out, survey=survey, stages=stages)
    stages.finish()
    seconds = time.perf_counter() - start
    if problems:
        sys.exit("\n".join(str(p) for p in problems))
    return seconds, stages.times


def shown(times: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in times.items())


def serial_notebooks(root: Path) -> float | None:
    """Seconds to run every notebook one after the other, or None when run_all has no `jobs`."""
    from atlas.notebooks import run_all

    params = inspect.signature(run_all).parameters
    if "jobs" not in params:
        return None
    with tempfile.TemporaryDirectory(prefix="atlas-nb-serial-") as out:
        start = time.perf_counter()
        run_all(root, Path(out), jobs=1, **({"quiet": True} if "quiet" in params else {}))
        return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="atlas-site-bench-") as tmp:
        tmp = Path(tmp)
        copy = shutil.copytree(ROOT, tmp / "repo", ignore=IGNORE)
        survey, _ = load(copy, deep=False)
        cold, cold_stages = timed_build(copy, tmp / "site-cold")
        pages = sum(1 for _ in (tmp / "site-cold").rglob("index.html"))
        print(f"survey: {len(survey.notes)} notes, {len(survey.entries)} bib entries, {pages} pages")
        print(f"cold build: {cold:.1f} s ({shown(cold_stages)})")
        warm, warm_stages = timed_build(copy, tmp / "site-warm")
        print(
            f"warm build: {warm:.1f} s ({shown(warm_stages)}); anchor: under 10 s: {'met' if warm < 10 else 'missed'}"
        )
        serial = serial_notebooks(copy)
        if serial is None:
            print("serial notebook time: not measured (atlas.notebooks.run_all runs the notebooks one by one)")
        else:
            part = cold_stages.get("notebooks", 0.0)
            ratio = part / serial if serial else float("nan")
            verdict = "met" if ratio <= 0.6 else "missed"
            print(
                f"notebooks: {part:.1f} s in the cold build, {serial:.1f} s serial: ratio {ratio:.2f} "
                f"(anchor: at most 0.6: {verdict})"
            )
        if "--grown" in sys.argv[1:]:
            notes, entries = grow(copy)
            big, _ = timed_build(copy, tmp / "site-grown")
            print(f"grown x{COPIES + 1}: {notes} notes, {entries} bib entries: warm build {big:.1f} s")
            growth = notes / max(len(survey.notes), 1)
            ratio = big / warm
            print(
                f"ratio: {ratio:.2f} for {growth:.1f}x the notes "
                f"({'linear or better' if ratio <= growth else 'worse than linear'})"
            )


if __name__ == "__main__":
    main()
