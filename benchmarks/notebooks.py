"""Notebooks of a cold build: serial run time against the parallel run of atlas.notebooks.run_all.

    .venv/bin/python benchmarks/notebooks.py [--jobs N]

Runs every docs/notebooks/*.py twice into empty temporary folders (a cold build: nothing cached),
first with one worker (the serial anchor), then with `--jobs` workers (default: the available
cores, as `atlas build` does), and prints both times and their ratio. Goal: parallel / serial
<= 0.6 on the 2-core development machine. Each kernel uses one thread (OMP_NUM_THREADS=1 and
torch.set_num_threads(1) in every notebook), so the ratio measures the parallel schedule, not
extra threads. The figures only mean something on an otherwise idle machine: the load average
before each run is printed beside it; on a shared machine the parallel run competes with other
work and the ratio rises toward 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from atlas.notebooks import default_jobs, notebook_paths, run_all

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.6


def timed(out: Path, jobs: int) -> float:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    run_all(ROOT, out=out, jobs=jobs, quiet=True)
    seconds = time.perf_counter() - start
    print(f"  {jobs} worker{'s' * (jobs > 1)}: {seconds:6.1f} s   (1-min load average before: {load:.2f})", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="workers of the parallel run")
    args = parser.parse_args()
    n = len(notebook_paths(ROOT))
    print(f"{n} notebooks, {os.cpu_count()} cores; cold runs (empty output folders)")
    with tempfile.TemporaryDirectory(prefix="atlas-nb-bench-") as tmp:
        serial = timed(Path(tmp) / "serial", 1)
        parallel = timed(Path(tmp) / "parallel", args.jobs)
    ratio = parallel / serial
    print(
        f"serial {serial:.1f} s, parallel ({args.jobs} workers) {parallel:.1f} s, ratio {ratio:.2f} "
        f"({'meets' if ratio <= GOAL else 'misses'} the goal <= {GOAL}; meaningful only on an idle machine)"
    )


if __name__ == "__main__":
    main()
