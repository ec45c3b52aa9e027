"""Whatever state build/ or site/ is in, `atlas export`, `atlas site` and `atlas build` answer with one
line `path:1: what; what to do`, exit 1 and leave the previous output as it was; progress shows
stages (plain lines, a rich bar in a terminal, nothing when quiet); `atlas serve --watch` watches
every source of the site and keeps the last good preview when a rebuild fails."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

import atlas.site
from atlas.cli import app, site_handler
from atlas.outputs import blocked, replace_folder
from atlas.progress import Stages

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_into_a_file_where_its_folder_should_be_is_one_line(good_kb: Path):
    (good_kb / "build").mkdir()
    (good_kb / "build/overleaf").write_text("not a folder")
    result = invoke("export", "--root", str(good_kb))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "build/overleaf:1: a file where the export folder should be; move or delete build/overleaf, then rerun"
    ]
    assert (good_kb / "build/overleaf").read_text() == "not a folder"


def test_export_when_build_itself_is_a_file_is_one_line(good_kb: Path):
    (good_kb / "build").write_text("x")
    result = invoke("export", "--root", str(good_kb))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "build:1: a file where the export folder should be; move or delete build, then rerun"
    ]


def test_site_and_build_refuse_a_file_where_site_should_be_before_writing_anything(good_kb: Path):
    (good_kb / "site").write_text("an old file")
    for command in ("site", "build"):
        result = invoke(command, "--root", str(good_kb))
        assert result.exit_code == 1
        assert result.output.splitlines() == [
            "site:1: a file where the site folder should be; move or delete site, then rerun"
        ]
    assert (good_kb / "site").read_text() == "an old file"
    assert not (good_kb / "build" / "overleaf").exists()


def test_a_failing_site_build_leaves_the_previous_site_intact(good_kb: Path, monkeypatch):
    previous = good_kb / "site"
    (previous / "papers").mkdir(parents=True)
    (previous / "index.html").write_text("<p>the previous build</p>")
    (previous / "papers/index.html").write_text("<p>papers</p>")
    before = tree(previous)

    def half_written_then_failed(root, site_dir, survey=None, stages=None):
        (Path(site_dir) / "index.html").write_text("half")
        from atlas.problems import Problem

        return [Problem("mkdocs.yml", 1, "mkdocs build: a warning", "a build without warnings")], ""

    monkeypatch.setattr(atlas.site, "build", half_written_then_failed)
    result = invoke("site", "--root", str(good_kb), "--quiet")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["mkdocs.yml:1: mkdocs build: a warning; a build without warnings"]
    assert tree(previous) == before
    assert [p.name for p in good_kb.iterdir() if p.name.startswith(".site")] == []  # no leftover


def test_replace_folder_swaps_in_a_complete_build_only():
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out"
        assert replace_folder(target, lambda d: (d / "a").write_text("1") > 0)
        assert not replace_folder(target, lambda d: (d / "a").write_text("2") < 0)
        with pytest.raises(RuntimeError):
            replace_folder(target, lambda d: (_ for _ in ()).throw(RuntimeError("boom")))
        assert (target / "a").read_text() == "1" and sorted(p.name for p in Path(tmp).iterdir()) == ["out"]


NOBODY = 65534
DROP = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]  # root without its override


def _runner_that_obeys_permissions() -> dict | None:
    """How to run a command that a read-only folder stops: as is for a normal user; as root, with the
    capabilities that let root write anywhere dropped (setpriv, util-linux) or else as the user
    nobody; None when neither works here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return {"prefix": [], "user": None}
    for way in ({"prefix": DROP, "user": None}, {"prefix": [], "user": NOBODY}):
        try:
            probe = subprocess.run([*way["prefix"], sys.executable, "-c", "0"], user=way["user"], capture_output=True)
        except OSError:
            continue
        if probe.returncode == 0:
            return way
    return None


RUNNER = _runner_that_obeys_permissions()


@pytest.mark.skipif(RUNNER is None, reason="root here can neither drop its capabilities nor run python as nobody")
def test_a_read_only_build_folder_is_one_line_and_the_previous_bundle_stays(good_kb: Path):
    """The export runs on a copy its user owns, in a way that a read-only folder stops (RUNNER)."""
    base = Path(tempfile.mkdtemp(prefix="atlas-ro-"))
    try:
        base.chmod(0o755)
        kb = shutil.copytree(good_kb, base / "kb")
        bundle = kb / "build" / "overleaf"
        bundle.mkdir(parents=True)
        (bundle / "related-work.tex").write_text("previous bundle")
        if RUNNER["user"] is not None:
            for p in [kb, *kb.rglob("*")]:
                os.chown(p, RUNNER["user"], RUNNER["user"], follow_symlinks=False)
        (kb / "build").chmod(0o555)
        proc = subprocess.run(
            [*RUNNER["prefix"], sys.executable, "-m", "atlas", "export", "--root", str(kb)],
            user=RUNNER["user"],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(kb), "MPLCONFIGDIR": str(kb / ".mpl")},
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout.splitlines() == [
            "build:1: cannot write in the folder (Permission denied); make it writable (chmod u+w build), then rerun"
        ]
        assert "Traceback" not in proc.stderr
        assert tree(bundle) == {"related-work.tex": b"previous bundle"}
    finally:
        if (base / "kb" / "build").is_dir():
            (base / "kb" / "build").chmod(0o755)  # so that a normal user can remove it
        shutil.rmtree(base, ignore_errors=True)


def test_blocked_names_the_first_file_on_the_way(tmp_path: Path):
    (tmp_path / "build").write_text("x")
    (p,) = blocked(tmp_path / "build" / "overleaf" / "deep", tmp_path)
    assert str(p).startswith("build:1: a file where")
    assert blocked(tmp_path / "site", tmp_path) == []  # nothing there yet: writable


# ---------------------------------------------------------------------------------------------
# progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stages_print_one_plain_line_each_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    stages = Stages("atlas site", ["load", "pages"], stream=out)
    stages.stage("load")
    stages.stage("pages")
    stages.finish()
    lines = out.getvalue().splitlines()
    assert [ln.split(" done in ")[0] for ln in lines] == ["atlas site: load", "atlas site: pages"]
    assert "\x1b" not in out.getvalue()


def test_stages_show_a_bar_in_a_terminal_plain_lines_under_no_color_nothing_when_quiet(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("ATLAS_PLAIN_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = FakeTerminal()
    stages = Stages("atlas site", ["load", "notebooks"], stream=terminal)
    assert stages.mode == "rich"
    stages.stage("load")
    stages.stage("notebooks")
    with stages.pause():  # a stage with its own display: the bar is off the screen
        assert stages._bar is not None and not stages._bar.live.is_started
    stages.finish()
    assert "\x1b[" in terminal.getvalue() and "atlas site: notebooks done in" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = FakeTerminal()
    Stages("atlas site", ["load"], stream=plain).finish()
    assert Stages("x", ["load"], stream=FakeTerminal()).mode == "plain"
    quiet = FakeTerminal()
    s = Stages("atlas site", ["load"], quiet=True, stream=quiet)
    s.stage("load")
    s.finish()
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------------------------------------
# serving


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_serve_answers_a_folder_without_index_with_404_never_a_listing(tmp_path: Path):
    import functools
    from http.server import ThreadingHTTPServer

    (tmp_path / "assets/js").mkdir(parents=True)
    (tmp_path / "assets/js/app.js").write_text("x")
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers/index.html").write_text("<h1>Papers</h1>")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(site_handler(), directory=str(tmp_path)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert _get(base + "/papers/") == (200, b"<h1>Papers</h1>")
        status, body = _get(base + "/assets/")
        assert status == 404 and b"Directory listing" not in body
        assert _get(base + "/assets/js/app.js") == (200, b"x")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serve_watch_watches_every_source_and_keeps_the_last_good_preview(good_kb: Path, monkeypatch):
    for name in ("reference_impls", "docs"):
        (good_kb / name).mkdir(exist_ok=True)
    builds = {"n": 0}

    def fake_build(root, site_dir, survey=None, stages=None):
        builds["n"] += 1
        (Path(site_dir) / "index.html").write_text(f"build {builds['n']}")
        return [], ""

    seen = {}

    class FakeServer:
        def __init__(self, builder, host, port, root):
            self.builder, self.root, self.watched = builder, Path(root), []

        def watch(self, path):
            self.watched.append(Path(path).relative_to(good_kb).as_posix())

        def serve(self):
            assert (self.root / "index.html").read_text() == "build 1"
            note = good_kb / "papers/oord2017neural.md"
            note.write_text(note.read_text().replace("prior: autoregressive", "prior: autoregresive"))
            self.builder()  # the rebuild a save triggers: the survey is now wrong
            seen["after_bad"] = (self.root / "index.html").read_text()
            note.write_text(note.read_text().replace("prior: autoregresive", "prior: autoregressive"))
            self.builder()
            seen["after_fix"] = (self.root / "index.html").read_text()
            seen["watched"] = self.watched

        def shutdown(self):
            pass

    monkeypatch.setattr(atlas.site, "build", fake_build)
    monkeypatch.setattr("mkdocs.livereload.LiveReloadServer", FakeServer)
    result = invoke("serve", "--watch", "--port", "0", "--root", str(good_kb))
    assert result.exit_code == 0, result.output
    assert {"papers", "bib", "atlas.yml", "reference_impls", "docs"} <= set(seen["watched"])
    assert seen["after_bad"] == "build 1"  # the failed rebuild kept the preview
    assert seen["after_fix"] == "build 2"
    assert "papers/oord2017neural.md:7: unknown prior 'autoregresive'" in result.output
    assert "the preview keeps its last good build" in result.output
