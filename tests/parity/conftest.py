"""Parity tests: each module of reference_impls run beside the peer's own code on the same inputs.

The peers are the `parity` extra of pyproject.toml plus those that pin another torch, which
tests/parity/install.sh installs without their dependencies. Every test skips with a reason when
its peer is absent, so the default test run (without the extra) is unchanged.

Some peers' packages import heavy optional dependencies in their `__init__` (torchaudio,
torchvision, audiotools, soundfile) that the compared code never calls. `peer_module` imports one
module of such a package with the package's `__init__` skipped: the package is registered bare
(only its search path), so `dac.nn.quantize` loads `dac/nn/quantize.py` and what it imports,
nothing else.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch


def peer_module(name: str, *, bare: tuple[str, ...] = (), reason: str):
    """Import module `name` of an installed peer, registering the packages in `bare` without running
    their __init__; skip the test with `reason` when the peer is not installed."""
    top = name.split(".")[0]
    if importlib.util.find_spec(top) is None:
        pytest.skip(reason)
    for pkg in bare:
        if pkg in sys.modules:
            continue
        parent, _, leaf = pkg.rpartition(".")
        path = sys.modules[parent].__path__ if parent else None
        spec = importlib.machinery.PathFinder.find_spec(leaf, path)
        if spec is None or spec.submodule_search_locations is None:
            pytest.skip(f"{reason} ({pkg} is not a package here)")
        module = types.ModuleType(pkg)
        module.__path__ = list(spec.submodule_search_locations)
        module.__spec__ = spec
        module.__package__ = pkg
        sys.modules[pkg] = module
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def import_peer():
    """The function peer_module, for tests that import a peer module with bare packages."""
    return peer_module


@pytest.fixture(autouse=True)
def _seeded():
    """Peers that draw from the global generator (initialisations) see the same state in every test."""
    torch.manual_seed(0)
