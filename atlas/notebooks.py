"""Execute the jupytext notebooks of docs/notebooks/ into build/notebooks/<name>.ipynb.

Each `docs/notebooks/<name>.py` (percent format) is converted to a notebook, run top to bottom
in a `python3` kernel with the repository root as working directory, and written atomically.
A notebook is skipped when its output exists and carries the same source hash in its metadata
(`latent_atlas.source_sha256`): the hash covers the notebook's text and the text of every
`reference_impls` module it imports, so a change to a mechanism re-runs the notebooks that show it.
A failing cell stops everything with an AtlasError naming the notebook, the line of the cell in
the .py file and the error, one line, no traceback.

Stale notebooks run in parallel, one kernel per worker process, as many workers as cores
(`jobs`), the longest first: by the time stored in the previous output, else by the time the
notebook's header declares (`latent_atlas: {seconds: N}` under `jupyter:`, one run on two idle
cores), so that a fresh clone's two workers also end together. Progress goes to the
terminal: a rich progress bar when stdout is a terminal, one plain line per notebook otherwise,
nothing with quiet=True. `run_one` runs a single notebook (the `atlas notebook NAME` command).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from atlas.problems import AtlasError, Code, Problem, rel
from atlas.progress import progress_mode
from atlas.text import write_atomic

NOTEBOOKS = "docs/notebooks"
BUILD = "build/notebooks"
KERNEL = "python3"
TIMEOUT = 300  # seconds per cell
META_KEY = "latent_atlas"
_IMPORT = re.compile(r"^\s*(?:from|import)\s+reference_impls\.(\w+)", re.MULTILINE)


def source_hash(path: Path, root: Path) -> str:
    """sha256 of the notebook's text and of the reference_impls modules it imports."""
    text = path.read_text(encoding="utf-8")
    h = hashlib.sha256(text.encode("utf-8"))
    for module in sorted(set(_IMPORT.findall(text))):
        mod_path = root / "reference_impls" / f"{module}.py"
        if mod_path.is_file():
            h.update(f"\n--{module}--\n".encode())
            h.update(mod_path.read_bytes())
    return h.hexdigest()


def cell_lines(path: Path, n_cells: int) -> list[int]:
    """1-based line in the .py where each notebook cell starts (its `# %%` marker)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    markers = [i + 1 for i, line in enumerate(lines) if line.startswith("# %%")]
    if len(markers) < n_cells:  # text before the first marker became a cell of its own
        first = next((i + 1 for i, line in enumerate(lines) if line.strip() and not line.startswith("# ---")), 1)
        markers = [first] * (n_cells - len(markers)) + markers
    return markers[:n_cells]


def _stored_hash(out_path: Path) -> str | None:
    import nbformat

    try:
        nb = nbformat.read(out_path, as_version=4)
    except Exception:  # missing, unreadable or half-written: run again
        return None
    return nb.metadata.get(META_KEY, {}).get("source_sha256")


def execute_notebook(path: Path, root: Path, timeout: int = TIMEOUT, on_cell: Callable[[int, int], None] | None = None):
    """Run one jupytext notebook; returns the executed nbformat notebook. Raises AtlasError on a failing cell.

    on_cell(done, total) is called after each code cell (for a progress bar).
    """
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    total = sum(1 for c in nb.cells if c.cell_type == "code")
    done = [0]

    def executed(**_kwargs) -> None:
        done[0] += 1
        if on_cell is not None:
            on_cell(done[0], total)

    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=timeout,
        resources={"metadata": {"path": str(root)}},
        on_cell_executed=executed,
        # the kernel logs errors only: no "running over TCP without encryption"
        # warning per kernel on the terminal (its stderr is the command's)
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    # figures as PNG outputs; one thread per kernel, so parallel kernels do not oversubscribe the cores
    env = {
        **os.environ,
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    name = rel(path, root)
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        index, ename, evalue = _failing_cell(nb, exc)
        line = cell_lines(path, len(nb.cells))[index] if index is not None else 1
        cell_no = f"cell {index + 1}" if index is not None else "a cell"
        raise AtlasError(
            [
                Problem(
                    name, line, f"{cell_no} raised {ename}: {evalue}", "the notebook to run top to bottom", Code.BUILD
                )
            ]
        ) from None
    return nb


def _failing_cell(nb, exc) -> tuple[int | None, str, str]:
    """(index of the failing cell, error type, message) from the outputs or the exception."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, out.get("ename", "Error"), _one_line(out.get("evalue", ""))
    ename = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None) or str(exc).strip().splitlines()[-1:] or [""]
    evalue = evalue if isinstance(evalue, str) else evalue[0]
    # a timeout or a dead kernel: the running cell is the first code cell without an execution count
    running = next(
        (i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count") is None), None
    )
    return running, ename, _one_line(evalue)


def _one_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # ANSI colours from IPython
    return " ".join(text.split()) or "(no message)"


def notebook_paths(root: Path) -> list[Path]:
    return sorted((Path(root) / NOTEBOOKS).glob("*.py"))


def _stored_seconds(out_path: Path) -> float | None:
    import nbformat

    try:
        return float(nbformat.read(out_path, as_version=4).metadata[META_KEY]["seconds"])
    except Exception:
        return None


def declared_seconds(path: Path) -> float | None:
    """The run time a notebook's jupytext header declares (jupyter: latent_atlas: seconds:), if any."""
    import jupytext

    try:
        return float(jupytext.read(path, fmt="py:percent").metadata[META_KEY]["seconds"])
    except Exception:  # no header, no such key, or a file jupytext cannot read: no declared time
        return None


def declared_papers(text: str) -> list[str]:
    """The bib keys of the papers a notebook's jupytext header says it illustrates
    (jupyter: latent_atlas: papers: [key, ...]), beside the one notebook of each note's `notebook:`."""
    import jupytext

    try:
        papers = jupytext.reads(text, fmt="py:percent").metadata[META_KEY]["papers"]
    except Exception:  # no header, no such key, or text jupytext cannot read: no papers named
        return []
    return [str(k) for k in papers] if isinstance(papers, list) else []


def _expected_seconds(path: Path, target: Path) -> float:
    """For ordering the runs: the previous run's time, else the declared one, else the source's size in kB."""
    return _stored_seconds(target) or declared_seconds(path) or path.stat().st_size / 1000


def _run_and_write(
    path: Path, root: Path, target: Path, digest: str, timeout: int, on_cell: Callable[[int, int], None] | None = None
) -> float:
    """Execute one notebook and write it atomically with its hash and run time; returns the seconds."""
    import nbformat

    start = time.perf_counter()
    nb = execute_notebook(path, root, timeout, on_cell)
    seconds = time.perf_counter() - start
    nb.metadata[META_KEY] = {"source": rel(path, root), "source_sha256": digest, "seconds": round(seconds, 2)}
    write_atomic(target, nbformat.writes(nb).rstrip("\n") + "\n")
    return seconds


def _worker(path: str, root: str, target: str, digest: str, timeout: int) -> tuple[float, list[tuple]]:
    """Process-pool entry: (seconds, []) or (0, problems as tuples); never raises for a failing cell."""
    try:
        return _run_and_write(Path(path), Path(root), Path(target), digest, timeout), []
    except AtlasError as exc:
        return 0.0, [(p.path, p.line, p.message, p.expected, p.code) for p in exc.problems]


class Reporter:
    """Progress of notebook runs in atlas.progress's modes: a rich bar in a terminal that allows colour,
    plain lines otherwise (a pipe, a log, NO_COLOR or --no-color, TERM=dumb), nothing when quiet."""

    def __init__(self, total: int, quiet: bool = False, stream=None, label: str = "notebooks"):
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.total = total
        self.done = 0
        self.progress = None
        if total and progress_mode(quiet, self.stream) == "rich":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=self.stream)
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self.task = self.progress.add_task(label, total=total)
            self.progress.start()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, text: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1)
        self.line(f"[{self.done}/{self.total}] {text}")

    def update(self, done: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def default_jobs() -> int:
    """Worker processes for the notebooks: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_all(
    root: Path,
    out: Path | None = None,
    timeout: int = TIMEOUT,
    quiet: bool = False,
    jobs: int | None = None,
    stream=None,
) -> dict[str, Path]:
    """Execute every docs/notebooks/*.py into out (default root/build/notebooks)/<name>.ipynb.

    Returns {name: path of the executed notebook} for every notebook, run or skipped.
    Unchanged notebooks (same source hash as the stored output) are not run again; the others run
    in `jobs` worker processes (default: the available cores), longest first. Every failing
    notebook is reported (one problem each) after the others have finished.
    """

    root = Path(root)
    out = Path(out) if out is not None else root / BUILD
    results: dict[str, Path] = {}
    stale: list[tuple[Path, Path, str]] = []
    for path in notebook_paths(root):
        target = out / f"{path.stem}.ipynb"
        digest = source_hash(path, root)
        results[path.stem] = target
        if not (target.is_file() and _stored_hash(target) == digest):
            stale.append((path, target, digest))
    reporter = Reporter(len(stale), quiet=quiet, stream=stream)
    if not stale:
        if results:
            reporter.line(f"notebooks: {len(results)} unchanged, not run again")
        return results
    # longest first, so that the workers end together
    stale.sort(key=lambda s: -_expected_seconds(s[0], s[1]))
    jobs = max(1, min(jobs or default_jobs(), len(stale)))
    reporter.line(f"notebooks: running {len(stale)} of {len(results)} on {jobs} worker{'s' * (jobs > 1)}")
    problems: list[Problem] = []
    start = time.perf_counter()
    try:
        if jobs == 1:
            for path, target, digest in stale:
                try:
                    seconds = _run_and_write(path, root, target, digest, timeout)
                except AtlasError as exc:
                    problems += exc.problems
                    reporter.advance(f"{path.stem}: failed")
                    continue
                reporter.advance(f"{path.stem}: ran in {seconds:.1f} s")
        else:
            import multiprocessing

            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {
                    pool.submit(_worker, str(path), str(root), str(target), digest, timeout): path
                    for path, target, digest in stale
                }
                for future in as_completed(futures):
                    seconds, failed = future.result()
                    name = futures[future].stem
                    problems += [Problem(*p) for p in failed]
                    reporter.advance(f"{name}: failed" if failed else f"{name}: ran in {seconds:.1f} s")
    finally:
        reporter.close()
    if problems:
        raise AtlasError(sorted(problems))
    reporter.line(f"notebooks: {len(stale)} run in {time.perf_counter() - start:.1f} s")
    return results


def find_notebook(root: Path, name: str) -> Path:
    """docs/notebooks/<name>.py for a name given with or without .py or the folder; AtlasError if none."""
    root = Path(root)
    stem = Path(name).name.removesuffix(".py").removesuffix(".ipynb")
    path = root / NOTEBOOKS / f"{stem}.py"
    if not path.is_file():
        names = ", ".join(p.stem for p in notebook_paths(root)) or "none"
        raise AtlasError([Problem(NOTEBOOKS, 1, f"no notebook named '{name}'", f"one of: {names}")])
    return path


def run_one(
    root: Path, name: str, out: Path | None = None, timeout: int = TIMEOUT, quiet: bool = False, stream=None
) -> tuple[Path, float]:
    """Run one notebook (always, cached or not) into out/<name>.ipynb; returns (that path, seconds).

    Progress: one step per code cell (a bar in a terminal), nothing when quiet.
    """
    root = Path(root)
    path = find_notebook(root, name)
    out = Path(out) if out is not None else root / BUILD
    target = out / f"{path.stem}.ipynb"
    import jupytext

    n_code = sum(1 for c in jupytext.read(path, fmt="py:percent").cells if c.cell_type == "code")
    reporter = Reporter(n_code, quiet=quiet, stream=stream, label=path.stem)
    is_bar = reporter.progress is not None
    try:
        seconds = _run_and_write(
            path,
            root,
            target,
            source_hash(path, root),
            timeout,
            on_cell=(lambda done, total: reporter.update(done))
            if is_bar
            else (lambda done, total: reporter.line(f"{path.stem}: cell {done}/{total}")),
        )
    finally:
        reporter.close()
    return target, seconds
