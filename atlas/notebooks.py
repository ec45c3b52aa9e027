"""Execute the jupytext notebooks of docs/notebooks/ into build/notebooks/<name>.ipynb.

Each `docs/notebooks/<name>.py` (percent format) is converted to a notebook, run top to bottom
in a `python3` kernel with the repository root as working directory, and written atomically.
A notebook is skipped when its output exists and carries the same source hash in its metadata
(`latent_atlas.source_sha256`): the hash covers the notebook's text and the text of every
`reference_impls` module it imports, so a change to a mechanism re-runs the notebooks that show it.
A failing cell stops everything with an AtlasError naming the notebook, the line of the cell in
the .py file and the error, one line, no traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

from atlas.problems import AtlasError, Code, Problem, rel
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


def execute_notebook(path: Path, root: Path, timeout: int = TIMEOUT):
    """Run one jupytext notebook; returns the executed nbformat notebook. Raises AtlasError on a failing cell."""
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, resources={"metadata": {"path": str(root)}})
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # figures as PNG outputs
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


def run_all(root: Path, out: Path | None = None, timeout: int = TIMEOUT, verbose: bool = False) -> dict[str, Path]:
    """Execute every docs/notebooks/*.py into out (default root/build/notebooks)/<name>.ipynb.

    Returns {name: path of the executed notebook} for every notebook, run or skipped.
    Unchanged notebooks (same source hash as the stored output) are not run again.
    """
    import nbformat

    root = Path(root)
    out = Path(out) if out is not None else root / BUILD
    results: dict[str, Path] = {}
    for path in sorted((root / NOTEBOOKS).glob("*.py")):
        name = path.stem
        target = out / f"{name}.ipynb"
        digest = source_hash(path, root)
        if target.is_file() and _stored_hash(target) == digest:
            results[name] = target
            if verbose:
                print(f"{name}: unchanged, skipped")
            continue
        start = time.perf_counter()
        nb = execute_notebook(path, root, timeout)
        seconds = time.perf_counter() - start
        nb.metadata[META_KEY] = {"source": rel(path, root), "source_sha256": digest, "seconds": round(seconds, 2)}
        write_atomic(target, nbformat.writes(nb).rstrip("\n") + "\n")
        results[name] = target
        if verbose:
            print(f"{name}: ran in {seconds:.1f} s")
    return results
