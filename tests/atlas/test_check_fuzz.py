"""Property: whatever bytes a note, the bib or atlas.yml holds, the check answers with problems, never
a traceback.

Hypothesis mutates the good fixture's note, bib entry and atlas.yml (random bytes, cut YAML, stray
braces, a deleted, duplicated or truncated line, a flipped letter or an odd character such as
U+FEFF inside a key, other encodings such as UTF-16 and Latin-1, Windows line ends and a
byte-order mark) and runs `atlas check` in-process: the exit status is 0 or 1, nothing escapes as
an exception, and every line of a failing check is `path:line: ...` naming a file that exists.

The bounded runs here fit the test budget; a longer run of the same properties:

    ATLAS_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -p no:xdist tests/atlas/test_check_fuzz.py
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from atlas.cli import app

REPO = Path(__file__).resolve().parents[2]
GOOD = REPO / "tests" / "fixtures" / "good"
NOTE = GOOD / "papers" / "oord2017neural.md"
BIB = GOOD / "bib" / "references.bib"
CONFIG = REPO / "atlas.yml"
EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "0"))  # a longer run when set
ODD = ["\ufeff", "\u200b", "\u00e9", "\x00", "\t", "\u2028", "'", '"', "#", "%", "{", "}"]


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["insert", "cut", "brace", "encode", "crlf", "delete-line", "duplicate-line", "truncate-line", "odd"]
        kind = draw(st.sampled_from(kinds + ["flip-key", "odd-in-key"]))
        pos = draw(st.integers(0, len(data)))
        keys = [m.span(1) for m in re.finditer(rb"(?:^key: |@\w+\{)([a-z0-9]+)", data, re.M)]
        if kind in ("flip-key", "odd-in-key") and keys:
            a, b = keys[draw(st.integers(0, len(keys) - 1))]
            i = draw(st.integers(a, b - 1))
            if kind == "flip-key":
                data = data[:i] + bytes([(data[i] - 97 + draw(st.integers(1, 25))) % 26 + 97]) + data[i + 1 :]
            else:
                data = data[:i] + draw(st.sampled_from(ODD)).encode() + data[i:]
            continue
        if kind == "insert":
            data = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
        elif kind == "cut":
            data = data[:pos]
        elif kind == "brace":
            data = (
                data[:pos]
                + draw(st.sampled_from([b"{", b"}", b"[", b"]", b"---\n", b":", b"$", b"@", b"\\"]))
                + data[pos:]
            )
        elif kind == "encode":
            codec = draw(st.sampled_from(["latin-1", "utf-16", "utf-8-sig", "cp1252"]))
            data = data.decode("utf-8", "replace").encode(codec, "replace")
        elif kind == "crlf":
            data = b"\xef\xbb\xbf" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        elif kind in ("delete-line", "duplicate-line", "truncate-line"):
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "delete-line" and len(lines) > 1:
                del lines[i]
            elif kind == "duplicate-line":
                lines.insert(i, lines[i])
            else:
                lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
            data = b"\n".join(lines)
        else:
            data = data[:pos] + draw(st.sampled_from(ODD)).encode() + data[pos:]
    return data


FUZZ = dict(deadline=None, derandomize=not EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
PROBLEM = re.compile(r"^(?P<path>[^:\n]+):(?P<line>[1-9]\d*): \S")


def _check(root: Path) -> int:
    result = CliRunner().invoke(app, ["check", "--root", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 1:
        lines = [ln for ln in result.output.splitlines() if ln and not ln.startswith(("atlas check:", "pending:"))]
        assert lines, "a failing check names at least one problem"
        for ln in lines:
            m = PROBLEM.match(ln)
            assert m, f"not a path:line problem: {ln!r}"
            assert (root / m["path"]).exists(), f"names a file that does not exist: {ln!r}"
    return result.exit_code


@settings(max_examples=EXAMPLES or 60, **FUZZ)
@given(note=mutated(NOTE.read_bytes()), bib=mutated(BIB.read_bytes()), which=st.sampled_from(["note", "bib", "both"]))
def test_check_never_crashes_on_mutated_notes_and_bib(tmp_path_factory, note, bib, which):
    root = tmp_path_factory.mktemp("kb")
    shutil.copytree(GOOD, root, dirs_exist_ok=True)
    shutil.copy(REPO / "atlas.yml", root / "atlas.yml")
    if which in ("note", "both"):
        (root / "papers" / "oord2017neural.md").write_bytes(note)
    if which in ("bib", "both"):
        (root / "bib" / "references.bib").write_bytes(bib)
    assert _check(root) in (0, 1)


@settings(max_examples=EXAMPLES or 40, **FUZZ)
@given(config=mutated(CONFIG.read_bytes()), note=mutated(NOTE.read_bytes()), with_note=st.booleans())
def test_check_never_crashes_on_a_mutated_atlas_yml(tmp_path_factory, config, note, with_note):
    root = tmp_path_factory.mktemp("kb")
    shutil.copytree(GOOD, root, dirs_exist_ok=True)
    (root / "atlas.yml").write_bytes(config)
    if with_note:
        (root / "papers" / "oord2017neural.md").write_bytes(note)
    assert _check(root) in (0, 1)


def test_an_empty_atlas_yml_or_front_matter_is_a_problem_not_silence(good_kb: Path):
    (good_kb / "atlas.yml").write_bytes(b"")
    result = CliRunner().invoke(app, ["check", "--root", str(good_kb)])
    assert result.exit_code == 1
    assert "atlas.yml:1: atlas.yml is empty; the keys vocabularies, groups, our_work" in result.output
    shutil.copy(REPO / "atlas.yml", good_kb / "atlas.yml")
    note = good_kb / "papers" / "oord2017neural.md"
    note.write_text("---\n---\n" + note.read_text().split("---\n", 2)[2])
    result = CliRunner().invoke(app, ["check", "--root", str(good_kb)])
    assert result.exit_code == 1
    assert "papers/oord2017neural.md:2: front matter is empty; key: value lines" in result.output
