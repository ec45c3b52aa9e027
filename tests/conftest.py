"""Shared test set-up: fixture knowledge bases live under tests/fixtures and are not collected."""

import os
import shutil
from pathlib import Path

import pytest
import torch

# Tests are small; one thread each keeps them fast and steady on a loaded 2-core machine.
torch.set_num_threads(1)

collect_ignore = ["fixtures"]

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")


@pytest.fixture
def good_kb(tmp_path: Path) -> Path:
    """A copy of the good fixture knowledge base, with the repository's own atlas.yml."""
    root = tmp_path / "kb"
    shutil.copytree(REPO / "tests" / "fixtures" / "good", root)
    shutil.copy(REPO / "atlas.yml", root / "atlas.yml")
    return root


# Notebook run times travel in each report's user_properties (tests/notebooks), so the summary
# also works under pytest-xdist, whose controller loads only this top-level conftest.
NOTEBOOK_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        for key, value in report.user_properties:
            if key == "notebook_seconds":
                NOTEBOOK_SECONDS[report.nodeid.split("[")[-1].rstrip("]")] = float(value)


def pytest_terminal_summary(terminalreporter) -> None:
    if not NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times (nbval, including kernel start)")
    for name, seconds in sorted(NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{name:28s} {seconds:6.1f} s")
    total = sum(NOTEBOOK_SECONDS.values())
    terminalreporter.write_line(f"{'total':28s} {total:6.1f} s over {len(NOTEBOOK_SECONDS)} notebooks")
