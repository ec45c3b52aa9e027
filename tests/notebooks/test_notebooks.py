"""Every notebook of docs/notebooks runs top to bottom under nbval, and its own asserts pass.

The notebooks end their key cells with `assert`s on the numbers they show (codebook usage,
errors by depth, validity of samples, schedule counts, ...), so a broken mechanism in
reference_impls or a broken notebook fails here. A failing cell is reported with the notebook,
the cell and the line of the cell in the .py file, both by nbval and by atlas.notebooks.run_all.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

import atlas.notebooks as notebooks
from atlas.notebooks import cell_lines, run_all, source_hash
from atlas.problems import AtlasError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "docs" / "notebooks").glob("*.py"))
REQUIRED = {
    "dvae_vs_vqvae",
    "codebook_collapse",
    "residual_quantization",
    "ar_sampling",
    "maskgit_decoding",
    "discrete_diffusion",
    "ddpm_vs_ddim",
    "guidance_sweep",
}


def run_nbval(py: Path, workdir: Path) -> tuple[int, str]:
    """Convert py to <workdir>/<name>.ipynb with the python3 kernel and run nbval-lax on it in a subprocess.

    Returns (exit code, message); on failure the message names the notebook, the cell, the line
    of that cell in the .py and the error.
    """
    ipynb = workdir / f"{py.stem}.ipynb"
    subprocess.run(
        [sys.executable, "-m", "jupytext", "--to", "ipynb", "--set-kernel", "python3", "-o", str(ipynb), str(py)],
        check=True,
        capture_output=True,
        text=True,
    )
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            ipynb.name,
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(workdir),
            "--nbval-current-env",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode == 0:
        return 0, ""
    out = proc.stdout + proc.stderr
    failed = re.findall(r"FAILED\s+\S*::Cell (\d+)", out) or re.findall(r"::Cell (\d+)", out)
    error = re.findall(r"^E?\s*(\w+(?:Error|Exception)\b.*)$", re.sub(r"\x1b\[[0-9;]*m", "", out), re.MULTILINE)
    if failed:
        cells = nbformat.read(ipynb, as_version=4).cells
        code_cells = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        index = code_cells[int(failed[0])]  # nbval counts code cells only, from 0
        line = cell_lines(py, len(cells))[index]
        where = f"cell {index + 1} (line {line} of {py.name})"
    else:
        where = "no cell named by nbval"
    what = error[-1].strip() if error else out.strip().splitlines()[-1]
    return proc.returncode, f"notebook {py.name}: {where} failed: {what}"


def test_the_required_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= REQUIRED


@pytest.mark.parametrize("py", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_checks_its_numbers_and_imports_reference_impls(py: Path):
    nb = jupytext.read(py, fmt="py:percent")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^\s*assert ", code, re.MULTILINE), f"{py.name} has no assert on its results"
    assert re.search(r"^from reference_impls\.\w+ import", code, re.MULTILINE), (
        f"{py.name} imports no reference_impls module"
    )
    assert "plt.show()" in code and nb.cells[-1].cell_type in {"code", "markdown"}
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
        "a notebook opens with its title"
    )


PARAM = re.compile(r"^([A-Z][A-Z_0-9]*) = .+#.*\b(\d[\d.]*) to (\d[\d.]*)\b", re.MULTILINE)


@pytest.mark.parametrize("py", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_opens_with_a_parameters_cell_whose_parameters_state_their_range(py: Path):
    nb = jupytext.read(py, fmt="py:percent")
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "the header names the project's kernel"
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), f"{py.name}: the first code cell is tagged parameters"
    names = re.findall(r"^([A-Z][A-Z_0-9]*) = ", first.source, re.MULTILINE)
    ranged = [m[0] for m in PARAM.findall(first.source)]
    assert "SEEDS" in names, f"{py.name}: the seeds are a parameter"
    assert names and names == ranged, (
        f"{py.name}: every parameter states its range ('a to b'): {set(names) - set(ranged)}"
    )
    # the notebook checks that its parameters lie in the stated ranges, so an assert below never trips on one outside
    assert re.search(r"^assert .*SEEDS", code[1].source, re.MULTILINE), f"{py.name}: the ranges are checked"


@pytest.mark.parametrize("py", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(py: Path, tmp_path: Path, record_property):
    start = time.perf_counter()
    code, message = run_nbval(py, tmp_path)
    seconds = time.perf_counter() - start
    record_property("notebook_seconds", round(seconds, 2))  # summed in conftest's terminal summary
    print(f"{py.stem}: {seconds:.1f} s")
    assert code == 0, message


BROKEN = """# %% [markdown]
# # A broken notebook

# %%
x = 1 + 1

# %%
raise ValueError("the toy mechanism is wrong")
"""


def _tiny_root(tmp_path: Path, text: str, name: str = "broken") -> Path:
    root = tmp_path / "kb"
    (root / "docs" / "notebooks").mkdir(parents=True)
    (root / "docs" / "notebooks" / f"{name}.py").write_text(text, encoding="utf-8")
    return root


def test_run_all_names_the_notebook_cell_and_line_of_a_failing_cell(tmp_path: Path):
    root = _tiny_root(tmp_path, BROKEN)
    with pytest.raises(AtlasError) as info:
        run_all(root, timeout=120)
    (problem,) = info.value.problems
    assert problem.path == "docs/notebooks/broken.py"
    assert problem.line == 7  # the `# %%` line of the failing cell
    assert problem.message == "cell 3 raised ValueError: the toy mechanism is wrong"
    assert str(problem).startswith("docs/notebooks/broken.py:7: cell 3 raised ValueError")
    assert "\n" not in str(problem) and "Traceback" not in str(problem)
    assert not (root / "build" / "notebooks" / "broken.ipynb").exists()


def test_nbval_path_names_the_notebook_cell_and_line_of_a_failing_cell(tmp_path: Path):
    root = _tiny_root(tmp_path, BROKEN)
    work = tmp_path / "work"
    work.mkdir()
    code, message = run_nbval(root / "docs" / "notebooks" / "broken.py", work)
    assert code != 0
    assert "notebook broken.py: cell 3 (line 7 of broken.py) failed" in message
    assert "ValueError: the toy mechanism is wrong" in message


def test_run_all_writes_atomically_stores_the_hash_and_skips_unchanged_notebooks(tmp_path: Path, monkeypatch):
    root = _tiny_root(tmp_path, "# %%\nvalue = 6 * 7\nprint(value)\n", name="ok")
    out = run_all(root, timeout=120)
    target = out["ok"]
    assert target == root / "build" / "notebooks" / "ok.ipynb"
    nb = nbformat.read(target, as_version=4)
    assert nb.metadata["latent_atlas"]["source_sha256"] == source_hash(root / "docs" / "notebooks" / "ok.py", root)
    assert "42" in nb.cells[0].outputs[0]["text"]
    assert [p.name for p in target.parent.iterdir()] == ["ok.ipynb"]  # no temporary file left behind

    calls = []
    monkeypatch.setattr(notebooks, "execute_notebook", lambda *a, **k: calls.append(a) or pytest.fail("re-ran"))
    assert run_all(root)["ok"] == target and calls == []  # unchanged: skipped
    monkeypatch.undo()

    (root / "docs" / "notebooks" / "ok.py").write_text("# %%\nprint(6 * 8)\n", encoding="utf-8")
    run_all(root, timeout=120)  # changed: run again
    assert "48" in nbformat.read(target, as_version=4).cells[0].outputs[0]["text"]


def test_source_hash_follows_the_imported_reference_module(tmp_path: Path):
    root = _tiny_root(tmp_path, "# %%\nfrom reference_impls.toy import f\n", name="uses_toy")
    (root / "reference_impls").mkdir()
    (root / "reference_impls" / "toy.py").write_text("def f():\n    return 1\n")
    before = source_hash(root / "docs" / "notebooks" / "uses_toy.py", root)
    (root / "reference_impls" / "toy.py").write_text("def f():\n    return 2\n")
    assert source_hash(root / "docs" / "notebooks" / "uses_toy.py", root) != before


SLEEPY = "# %%\nimport time\ntime.sleep({s})\nprint('slept {s}')\n"


def test_run_all_runs_stale_notebooks_in_parallel_and_prints_one_plain_line_each(tmp_path: Path):
    root = _tiny_root(tmp_path, SLEEPY.format(s=3), name="a")
    (root / "docs" / "notebooks" / "b.py").write_text(SLEEPY.format(s=3), encoding="utf-8")
    stream = io.StringIO()  # not a terminal: plain lines
    start = time.perf_counter()
    out = run_all(root, timeout=120, jobs=2, stream=stream)
    seconds = time.perf_counter() - start
    assert set(out) == {"a", "b"} and all(p.is_file() for p in out.values())
    assert "slept 3" in nbformat.read(out["b"], as_version=4).cells[0].outputs[0]["text"]
    lines = stream.getvalue().splitlines()
    assert lines[0] == "notebooks: running 2 of 2 on 2 workers"
    assert sorted(line.split("] ")[1].split(":")[0] for line in lines[1:3]) == ["a", "b"]
    assert all(re.fullmatch(r"\[[12]/2\] [ab]: ran in \d+\.\d s", line) for line in lines[1:3])
    # both kernels slept at the same time: well under the 6 s of sleeping in a row (plus two kernel starts)
    ran = [nbformat.read(p, as_version=4).metadata["latent_atlas"]["seconds"] for p in out.values()]
    assert seconds < sum(ran) - 1.0, (seconds, ran)


def test_run_all_reports_every_failing_notebook_and_prints_nothing_when_quiet(tmp_path: Path):
    root = _tiny_root(tmp_path, BROKEN, name="broken")
    (root / "docs" / "notebooks" / "also_broken.py").write_text("# %%\n1 / 0\n", encoding="utf-8")
    (root / "docs" / "notebooks" / "fine.py").write_text("# %%\nprint(1)\n", encoding="utf-8")
    stream = io.StringIO()
    with pytest.raises(AtlasError) as info:
        run_all(root, timeout=120, jobs=2, quiet=True, stream=stream)
    assert stream.getvalue() == ""
    assert [(p.path, p.line) for p in info.value.problems] == [
        ("docs/notebooks/also_broken.py", 1),
        ("docs/notebooks/broken.py", 7),
    ]
    assert "ZeroDivisionError" in info.value.problems[0].message
    assert (root / "build" / "notebooks" / "fine.ipynb").is_file()  # the others still ran and were kept


def test_atlas_notebook_runs_one_notebook_and_prints_its_time(tmp_path: Path):
    root = _tiny_root(tmp_path, "# %%\nprint(6 * 7)\n", name="ok")
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "atlas", "notebook", "ok", "--root", str(root)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "ok: cell 1/1"  # progress, plain: stdout is not a terminal
    assert re.fullmatch(r"atlas notebook: ok ran in \d+\.\d s; wrote build/notebooks/ok\.ipynb", lines[-1])
    assert "42" in nbformat.read(root / "build" / "notebooks" / "ok.ipynb", as_version=4).cells[0].outputs[0]["text"]
    quiet = subprocess.run(
        [sys.executable, "-m", "atlas", "notebook", "ok.py", "--root", str(root), "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == 1
    missing = subprocess.run(
        [sys.executable, "-m", "atlas", "notebook", "nope", "--root", str(root)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stdout + missing.stderr
    assert missing.stdout.strip() == "docs/notebooks:1: no notebook named 'nope'; one of: ok"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reporter_draws_a_bar_in_a_terminal_and_plain_lines_under_no_color(monkeypatch):
    monkeypatch.delenv("ATLAS_PLAIN_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    bar = _Terminal()
    reporter = notebooks.Reporter(2, stream=bar)
    reporter.advance("a: ran in 1.0 s")
    reporter.close()
    assert "\x1b[" in bar.getvalue()  # a rich bar: cursor and style escapes
    monkeypatch.setenv("NO_COLOR", "1")  # what --no-color sets for the whole command
    plain = _Terminal()
    reporter = notebooks.Reporter(2, stream=plain)
    reporter.advance("a: ran in 1.0 s")
    reporter.advance("b: ran in 2.0 s")
    reporter.close()
    assert plain.getvalue().splitlines() == ["[1/2] a: ran in 1.0 s", "[2/2] b: ran in 2.0 s"]
    quiet = _Terminal()
    reporter = notebooks.Reporter(2, quiet=True, stream=quiet)
    reporter.advance("a: ran in 1.0 s")
    reporter.close()
    assert quiet.getvalue() == ""


def test_kernels_started_for_a_build_print_no_log_lines_to_the_terminal(tmp_path: Path):
    """The kernels' own log (ipykernel's "Kernel is running over TCP without encryption" warning,
    one per kernel) goes to the inherited stderr: it is silenced at launch, so it never shows."""
    root = _tiny_root(tmp_path, "# %%\nprint(6 * 7)\n", name="a")
    (root / "docs" / "notebooks" / "b.py").write_text("# %%\nprint(6 * 8)\n", encoding="utf-8")
    code = f"from atlas.notebooks import run_all; run_all({str(root)!r}, jobs=2, quiet=True, timeout=120)"
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "IPKernelApp" not in proc.stderr and "encryption" not in proc.stderr, proc.stderr


def _run_order(root: Path, monkeypatch) -> list[str]:
    """The order in which run_all starts the stale notebooks (one worker, nothing executed)."""
    order = []
    monkeypatch.setattr(notebooks, "_run_and_write", lambda path, *a, **k: order.append(path.stem) or 1.0)
    run_all(root, jobs=1, quiet=True)
    return order


def _header(seconds: float) -> str:
    return f"# ---\n# jupyter:\n#   latent_atlas:\n#     seconds: {seconds}  # a comment\n# ---\n\n# %%\nprint(1)\n"


def test_a_fresh_clone_runs_the_notebooks_longest_first_by_their_declared_time(tmp_path: Path, monkeypatch):
    root = _tiny_root(tmp_path, _header(2), name="short")
    folder = root / "docs" / "notebooks"
    (folder / "long.py").write_text(_header(30), encoding="utf-8")
    (folder / "middle.py").write_text(_header(9.5), encoding="utf-8")
    (folder / "undeclared_but_large.py").write_text("# %%\n" + "# padding\n" * 1400, encoding="utf-8")  # ~14 kB
    assert _run_order(root, monkeypatch) == ["long", "undeclared_but_large", "middle", "short"]


def test_the_time_a_previous_run_stored_outranks_the_declared_one(tmp_path: Path, monkeypatch):
    root = _tiny_root(tmp_path, _header(2), name="declared_short")
    (root / "docs" / "notebooks" / "declared_long.py").write_text(_header(30), encoding="utf-8")
    run_all(root, timeout=120)
    for name, seconds in (("declared_short", 50.0), ("declared_long", 1.0)):  # as measured last time
        path = root / "build" / "notebooks" / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        nb.metadata["latent_atlas"]["seconds"], nb.metadata["latent_atlas"]["source_sha256"] = seconds, "stale"
        nbformat.write(nb, path)
    assert _run_order(root, monkeypatch) == ["declared_short", "declared_long"]


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_declares_its_run_time_for_the_first_build(py: Path):
    seconds = notebooks.declared_seconds(py)
    assert seconds is not None and 0 < seconds < 300, f"{py.name}: add `latent_atlas: {{seconds: N}}` under jupyter:"
