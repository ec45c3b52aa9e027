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
