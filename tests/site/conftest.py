"""Shared set-up of the site tests: one strict build of the real survey per test run (shared by
the xdist workers through a lock), a local HTTP server for a built site, and a copy of the
repository for tests that break something."""

from __future__ import annotations

import fcntl
import functools
import json
import shutil
import threading
import time
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atlas.site import build

REPO = Path(__file__).resolve().parents[2]
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "site", ".cache", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "overleaf"
)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, str, float]:
    """(site folder, build log, seconds) of `mkdocs build --strict` of this repository, built once
    per run: xdist workers share the base temp folder and wait on one lock."""
    worker = getattr(request.config, "workerinput", None)
    shared = tmp_path_factory.getbasetemp() if worker is None else tmp_path_factory.getbasetemp().parent
    out, done = shared / "atlas-site" / "site", shared / "atlas-site" / "build.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(shared / "atlas-site" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                start = time.perf_counter()
                problems, log = build(REPO, out)
                done.write_text(
                    json.dumps(
                        {"problems": [str(p) for p in problems], "log": log, "seconds": time.perf_counter() - start}
                    )
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    result = json.loads(done.read_text())
    assert not result["problems"], "\n".join(result["problems"]) + "\n" + result["log"][-3000:]
    return out, result["log"], result["seconds"]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A copy of the files a site build reads (and the notebook cache under build/)."""
    return shutil.copytree(REPO, tmp_path / "repo", ignore=COPY_IGNORE)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def _serve(site: Path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def served_site(built_site):
    """The base URL of the built site, served on 127.0.0.1 from a thread."""
    with _serve(built_site[0]) as base:
        yield base
