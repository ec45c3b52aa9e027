"""Property: whatever bytes a note, the bib or atlas.yml holds, the check answers with problems, never
a traceback.

Hypothesis mutates the good fixture's note, bib entry and atlas.yml (random bytes, cut YAML, stray
braces, other encodings such as UTF-16 and Latin-1, Windows line ends and a byte-order mark) and
runs `atlas check` in-process: the exit status is 0 or 1 and nothing escapes as an exception.
"""

from __future__ import annotations

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


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "cut", "brace", "encode", "crlf", "delete-line"]))
        pos = draw(st.integers(0, len(data)))
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
        else:
            lines = data.split(b"\n")
            if len(lines) > 1:
                del lines[draw(st.integers(0, len(lines) - 1))]
            data = b"\n".join(lines)
    return data


def _check(root: Path) -> int:
    result = CliRunner().invoke(app, ["check", "--root", str(root)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result.exit_code


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
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


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
