"""The generated site is a function of its inputs: while the knowledge base is the one of the
recorded snapshot, a change of the tooling leaves every page as it was (see tests/site/snapshot.py)."""

from __future__ import annotations

import json

import pytest
import snapshot  # tests/site/snapshot.py: pytest puts this test's folder on the path


def test_pages_equal_the_snapshot_while_the_inputs_are_the_same():
    recorded = json.loads(snapshot.SNAPSHOT.read_text(encoding="utf-8"))
    if snapshot.inputs_digest(snapshot.REPO) != recorded["inputs"]:
        pytest.skip(
            "the knowledge base changed since the snapshot; review the pages and record a new one with "
            "`.venv/bin/python tests/site/snapshot.py --update`"
        )
    now = snapshot.digest(snapshot.pages(snapshot.REPO))
    assert sorted(now) == sorted(recorded["pages"]), "the page set changed"
    changed = [k for k in now if now[k] != recorded["pages"][k]]
    assert not changed, f"pages changed: {changed}"
