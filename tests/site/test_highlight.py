"""Highlighting remembered between builds (atlas/site/highlight.py): the same output, only faster."""

from __future__ import annotations

from xml.etree import ElementTree as etree

import markdown
import pytest
from pymdownx.highlight import Highlight

from atlas.site.highlight import RememberedHighlighting

CODE = "def f(x: int) -> int:\n    return x + 1  # one more\n"
EXTENSIONS = ["pymdownx.highlight", "pymdownx.superfences", "pymdownx.inlinehilite"]
CONFIG = {"pymdownx.highlight": {"anchor_linenums": True}}


def _page(code: str) -> str:
    text = f'# A page\n\n```python linenums="1"\n{code}```\n\nInline `#!python len(x) + 1` code.\n'
    return markdown.markdown(text, extensions=EXTENSIONS, extension_configs=CONFIG)


@pytest.fixture
def remembered(tmp_path):
    store = RememberedHighlighting(tmp_path / "highlight")
    yield store
    store.uninstall(prune=False)  # never leave pymdownx patched for the next test


def test_a_page_built_from_the_store_is_byte_identical_to_a_fresh_one(remembered):
    fresh = _page(CODE)
    remembered.install()
    first = _page(CODE)  # fills the store
    second = _page(CODE)  # read from it
    assert (remembered.misses, remembered.hits) == (2, 2)  # one block and one inline call each time
    assert first == fresh and second == fresh


def test_inline_results_come_back_as_the_same_element(remembered):
    plain = Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    remembered.install()
    Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    again = Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    assert remembered.hits == 1
    assert etree.tostring(again) == etree.tostring(plain)


def test_a_changed_setting_or_argument_is_highlighted_anew(remembered):
    remembered.install()
    numbered = Highlight(markdown.Markdown(), linenums=True).highlight(CODE, "python")
    plain = Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "python")
    other_language = Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "text")
    assert remembered.misses == 3 and remembered.hits == 0
    assert len({numbered, plain, other_language}) == 3
    remembered.uninstall(prune=False)
    assert plain == Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "python")


def test_a_build_that_finished_keeps_only_what_it_used(remembered):
    remembered.install()
    _page(CODE)
    _page(CODE.replace("one more", "the successor"))  # two more entries, no longer used below
    remembered.uninstall(prune=False)
    assert len(list(remembered.folder.glob("*.json"))) == 3  # two blocks, one inline call (the same in both)

    later = RememberedHighlighting(remembered.folder)
    later.install()
    _page(CODE)
    later.uninstall(prune=True)
    assert later.hits == 2 and len(list(later.folder.glob("*.json"))) == 2


def test_a_failed_build_prunes_nothing(remembered):
    remembered.install()
    _page(CODE)
    remembered.uninstall(prune=False)
    later = RememberedHighlighting(remembered.folder)
    later.install()
    later.uninstall(prune=False)  # nothing used: a build that stopped early
    assert len(list(later.folder.glob("*.json"))) == 2


def test_uninstall_puts_pymdownx_back(remembered):
    original = Highlight.highlight
    remembered.install()
    assert Highlight.highlight is not original
    remembered.uninstall(prune=False)
    assert Highlight.highlight is original


def test_a_corrupt_or_unwritable_store_costs_speed_not_the_page(tmp_path, remembered):
    fresh = _page(CODE)
    remembered.install()
    _page(CODE)
    for path in remembered.folder.glob("*.json"):
        path.write_text("{not json", encoding="utf-8")
    assert _page(CODE) == fresh  # unreadable entries are highlighted again
    remembered.uninstall(prune=False)

    blocked = tmp_path / "file-not-folder"
    blocked.write_text("", encoding="utf-8")
    store = RememberedHighlighting(blocked / "highlight")  # its parent is a file: nothing can be written
    store.install()
    try:
        assert _page(CODE) == fresh
    finally:
        store.uninstall(prune=True)
    assert blocked.is_file()


def test_a_call_with_a_title_is_never_remembered(remembered):
    remembered.install()
    Highlight(markdown.Markdown()).highlight(CODE, "python", title="f.py")
    assert remembered.misses == 0 and remembered.hits == 0
    assert not remembered.folder.exists()
