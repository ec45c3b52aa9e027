"""How long `atlas export` takes, against the 3 s goal of issue 12 and against loading the survey.

Anchor: loading the knowledge base (atlas.loader.load without imports), measured in the same run,
since the export's own work (selection, pandoc, templates, bib, zip) comes on top of it. Prints
the median of several runs of each length, and the ratios.

    .venv/bin/python benchmarks/export_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from atlas.export import ExportOptions, render, write
from atlas.loader import load_checked

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 3.0


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_s = _median(lambda: load_checked(ROOT, deep=False), args.runs)
    survey = load_checked(ROOT, deep=False)
    print(f"anchor: load the survey ({len(survey.notes)} notes): {load_s:.3f} s (median of {args.runs})")
    print(f"{'length':<8} {'render+write':>13} {'load+export':>12} {'x load':>7} {'of 3 s goal':>12}")
    for length in ("short", "column", "full"):
        opts = ExportOptions.from_settings(survey.config.export, length=length)
        with tempfile.TemporaryDirectory() as tmp:

            def export(tmp=tmp, opts=opts) -> None:
                rendered, problems = render(survey, opts)
                assert rendered is not None and not problems, problems
                write(Path(tmp) / "overleaf", rendered.files, True, "overleaf")

            export_s = _median(export, args.runs)
        total = load_s + export_s
        print(f"{length:<8} {export_s:>11.3f} s {total:>10.3f} s {total / load_s:>6.1f}x {total / GOAL_S:>11.0%}")


if __name__ == "__main__":
    main()
