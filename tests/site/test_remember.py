"""Work remembered between site builds (atlas/site/remember.py): the same output, only faster."""

from __future__ import annotations

from xml.etree import ElementTree as etree

import markdown
import pytest
from pymdownx.highlight import Highlight

from atlas.site.remember import RememberedHighlighting, RememberedSearchEntries, Store

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
    assert (remembered.store.misses, remembered.store.hits) == (2, 2)  # one block and one inline call each time
    assert first == fresh and second == fresh


def test_inline_results_come_back_as_the_same_element(remembered):
    plain = Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    remembered.install()
    Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    again = Highlight(markdown.Markdown(), guess_lang=False).highlight("len(x)", "python", inline=True)
    assert remembered.store.hits == 1
    assert etree.tostring(again) == etree.tostring(plain)


def test_a_changed_setting_or_argument_is_highlighted_anew(remembered):
    remembered.install()
    numbered = Highlight(markdown.Markdown(), linenums=True).highlight(CODE, "python")
    plain = Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "python")
    other_language = Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "text")
    assert remembered.store.misses == 3 and remembered.store.hits == 0
    assert len({numbered, plain, other_language}) == 3
    remembered.uninstall(prune=False)
    assert plain == Highlight(markdown.Markdown(), linenums=False).highlight(CODE, "python")


def test_a_build_that_finished_keeps_only_what_it_used(remembered):
    remembered.install()
    _page(CODE)
    _page(CODE.replace("one more", "the successor"))  # two more entries, no longer used below
    remembered.uninstall(prune=False)
    assert len(list(remembered.store.folder.glob("*.json"))) == 3  # two blocks, one inline call (the same in both)

    later = RememberedHighlighting(remembered.store.folder)
    later.install()
    _page(CODE)
    later.uninstall(prune=True)
    assert later.store.hits == 2 and len(list(later.store.folder.glob("*.json"))) == 2


def test_a_failed_build_prunes_nothing(remembered):
    remembered.install()
    _page(CODE)
    remembered.uninstall(prune=False)
    later = RememberedHighlighting(remembered.store.folder)
    later.install()
    later.uninstall(prune=False)  # nothing used: a build that stopped early
    assert len(list(later.store.folder.glob("*.json"))) == 2


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
    for path in remembered.store.folder.glob("*.json"):
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
    assert remembered.store.misses == 0 and remembered.store.hits == 0
    assert not remembered.store.folder.exists()


def _search_page(text: str, url: str = "papers/x/"):
    """A stand-in for an mkdocs page as the search plugin reads it: HTML, URL, title, toc, meta."""
    from types import SimpleNamespace

    from mkdocs.structure.toc import get_toc

    md = markdown.Markdown(extensions=["toc"])
    html = md.convert(text)
    return SimpleNamespace(content=html, url=url, title="X", toc=get_toc(md.toc_tokens), meta={})


def _index():
    from material.plugins.search.config import SearchConfig
    from material.plugins.search.plugin import SearchIndex

    config = SearchConfig()
    config.load_dict({})
    config.validate()
    return SearchIndex(**config)


PAGE = "# X\n\nIntro text.\n\n## Method\n\nThe $x$ and **y**.\n\n## Difference from our work\n\nOther words.\n"


def test_search_entries_from_the_store_equal_the_parsed_ones(tmp_path):
    fresh = _index()
    fresh.add_entry_from_context(_search_page(PAGE))
    remembered = RememberedSearchEntries(tmp_path / "search")
    remembered.install()
    try:
        first, second = _index(), _index()
        first.add_entry_from_context(_search_page(PAGE))
        second.add_entry_from_context(_search_page(PAGE))
    finally:
        remembered.uninstall(prune=False)
    assert (remembered.store.misses, remembered.store.hits) == (1, 1)
    assert len(fresh.entries) == 3  # the page and its two sections
    assert first.entries == fresh.entries and second.entries == fresh.entries
    assert second.generate_search_index(None) == fresh.generate_search_index(None)


def test_a_changed_page_or_url_is_indexed_anew(tmp_path):
    remembered = RememberedSearchEntries(tmp_path / "search")
    remembered.install()
    try:
        index = _index()
        index.add_entry_from_context(_search_page(PAGE))
        index.add_entry_from_context(_search_page(PAGE.replace("Other words", "New words")))
        index.add_entry_from_context(_search_page(PAGE, url="papers/y/"))
    finally:
        remembered.uninstall(prune=False)
    assert remembered.store.misses == 3 and remembered.store.hits == 0
    assert "New words" in index.entries[5]["text"] and index.entries[8]["location"].startswith("papers/y/")


def test_store_keys_follow_every_part_and_survive_a_restart(tmp_path):
    store = Store(tmp_path)
    key = Store.key("a", 1, ["b"])
    assert key == Store.key("a", 1, ["b"]) and key != Store.key("a", 1, ["c"]) and key != Store.key("a", 2, ["b"])
    store.put(key, {"html": "<b>x</b>"})
    assert Store(tmp_path).get(key) == {"html": "<b>x</b>"}


@pytest.mark.slow
def test_a_site_built_from_the_stores_is_byte_identical_to_a_fresh_build(repo_copy):
    import shutil

    from atlas.site import build

    shutil.rmtree(repo_copy / "build" / "cache", ignore_errors=True)
    problems, _ = build(repo_copy, repo_copy / "fresh")  # fills the stores
    assert not problems
    highlight, search = (repo_copy / "build" / "cache" / kind for kind in ("highlight", "search"))
    assert len(list(highlight.glob("*.json"))) > 100 and len(list(search.glob("*.json"))) > 100
    problems, _ = build(repo_copy, repo_copy / "warm")  # reads them
    assert not problems

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    fresh, warm = files(repo_copy / "fresh"), files(repo_copy / "warm")
    assert fresh.keys() == warm.keys()
    assert [name for name in fresh if fresh[name] != warm[name]] == []
