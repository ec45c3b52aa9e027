"""Command-line conventions: --version, shell completion, no escape byte under NO_COLOR or --no-color
(help included, in a real terminal), the root found upward from the working folder, and `atlas test`
handing its papers' tests to pytest with pytest's exit status."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.cli import app, find_root

REPO = Path(__file__).resolve().parents[2]
ATLAS = [sys.executable, "-m", "atlas"]


def run(args: list[str], cwd: Path, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ATLAS + args, cwd=cwd, capture_output=True, text=True, input=stdin, env={**os.environ, **(env or {})}
    )


def in_terminal(args: list[str], cwd: Path, env: dict) -> bytes:
    """Everything the command writes to a pseudo-terminal (as a user's shell would show it)."""
    leader, follower = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    proc = subprocess.Popen(
        ATLAS + args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**full_env, "TERM": "xterm-256color", "COLUMNS": "100", **env},
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(60)
    os.close(leader)
    return out


def command_paths() -> list[list[str]]:
    """Every command of the CLI, as argument lists: [], ['check'], ['bib', 'fmt'], ..."""
    import typer.main

    group = typer.main.get_command(app)
    paths = [[]]
    for name, cmd in group.commands.items():
        paths.append([name])
        for sub in getattr(cmd, "commands", {}):
            paths.append([name, sub])
    return paths


def test_version_names_the_installed_package():
    from importlib.metadata import version

    proc = run(["--version"], REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == f"atlas {version('latent-atlas')}"


def test_help_in_a_terminal_has_no_escape_byte_under_no_color_or_with_no_color():
    coloured = in_terminal(["--help"], REPO, {})
    assert b"\x1b[" in coloured  # the control: rich styles the help in a terminal
    for args in command_paths():
        out = in_terminal([*args, "--help"], REPO, {"NO_COLOR": "1"})
        assert b"Usage" in out and b"\x1b" not in out, (args, out[:300])
    assert b"\x1b" not in in_terminal(["--no-color", "--help"], REPO, {})
    assert b"\x1b" not in in_terminal(["--no-color", "check", "--help"], REPO, {})


def test_commands_in_a_terminal_print_no_escape_byte_under_no_color(good_kb: Path):
    (good_kb / "bib/references.bib").write_text("@misc{broken, title = {A\n")
    for args in (["check"], ["check", "--nonsense"], ["bib", "fmt", "--check"], ["add", "-"], ["test", "x"]):
        out = in_terminal(args, good_kb, {"NO_COLOR": "1"})
        assert out and b"\x1b" not in out, (args, out[:300])


def test_shell_completion_is_offered_and_completes_commands():
    atlas = str(Path(sys.executable).parent / "atlas")  # completion is keyed to the program's name
    script = subprocess.run([atlas, "--show-completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0 and "_ATLAS_COMPLETE=complete_bash" in script.stdout
    completed = subprocess.run(
        [atlas],
        env={**os.environ, "_ATLAS_COMPLETE": "complete_bash", "COMP_WORDS": "atlas ch", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
    )
    assert "check" in completed.stdout.split()


def test_the_root_is_found_upward_from_a_subfolder(good_kb: Path):
    assert find_root(good_kb / "papers") == good_kb.resolve()
    proc = run(["check"], good_kb / "papers")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("atlas check: ok: 2 papers in the bib")


def test_no_root_found_says_where_it_looked_in_one_line(tmp_path: Path):
    if find_root(tmp_path) is not None:
        pytest.skip("an atlas.yml lies above the temporary folder")
    proc = run(["check"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        f"atlas.yml:1: not found in {tmp_path.resolve()} nor in any folder above it; run atlas inside the "
        "survey's folder, or pass --root PATH"
    ]
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# atlas test


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


PROPERTY_TEST = """

def test_nearest_code_picks_the_closest_codebook_row():
    import torch

    codebook = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    z = torch.tensor([[0.9, 1.2], [4.0, 4.5], [-0.1, 0.2]])
    assert nearest_code(z, codebook).tolist() == [1, 2, 0]
"""


def with_a_real_test(root: Path) -> Path:
    test_file = root / "tests/check_vq.py"
    test_file.write_text(test_file.read_text() + PROPERTY_TEST)
    return test_file


def test_atlas_test_runs_a_papers_tests_and_returns_pytests_status(good_kb: Path):
    with_a_real_test(good_kb)
    ok = run(["test", "oord2017neural", "--root", str(good_kb)], REPO)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "tests/check_vq.py" in ok.stdout and re.search(r"\d+ passed", ok.stdout)
    test_file = good_kb / "tests/check_vq.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_fails():\n    assert False\n")
    failing = run(["test", "oord2017neural", "--root", str(good_kb)], REPO)
    assert failing.returncode == 1 and "1 failed" in failing.stdout


def test_atlas_test_without_keys_runs_the_papers_changed_since_the_last_commit(good_kb: Path):
    with_a_real_test(good_kb)
    _git(good_kb, "init", "-q")
    _git(good_kb, "add", "-A")
    _git(good_kb, "commit", "-qm", "kb")
    clean = run(["test"], good_kb)
    assert clean.returncode == 0
    assert clean.stdout.splitlines() == [
        "atlas test: nothing changed since the last commit; nothing to run (name papers: atlas test KEY ...)"
    ]
    note = good_kb / "papers/oord2017neural.md"
    note.write_text(note.read_text() + "\n")
    changed = run(["test"], good_kb)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "  oord2017neural: papers/oord2017neural.md" in changed.stdout.splitlines()
    assert re.search(r"\d+ passed", changed.stdout)


def test_no_test_hard_codes_the_number_of_papers():
    survey_counts = re.compile(r"\b(?:4[0-9]|[5-9][0-9])\s+(?:papers|notes|entries|bib entries)\b")
    offenders = [
        f"{p.relative_to(REPO)}:{i}"
        for p in (REPO / "tests").rglob("*.py")
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if survey_counts.search(line)
    ]
    assert offenders == []
