"""Work of a site build remembered for the next one, keyed by everything that determines it.

Two steps of a warm build redo the same work although the code and pages rarely change between two
builds: syntax highlighting (every source page and every signature mkdocstrings puts in an API
heading goes through Pygments) and the search index (Material's search plugin parses each page's
HTML to cut it into sections). While a build runs, each goes through a stand-in that returns the
stored result when its whole input is what it was when stored, and computes it otherwise:

- `RememberedHighlighting` stands in for `pymdownx.highlight.Highlight.highlight`, which both
  superfences and mkdocstrings use. Key: the code, the call's arguments, the highlighter's
  settings, and the versions of Pygments and pymdownx. A call with a title is never remembered
  (a title in HTML mode is written into the Markdown instance).
- `RememberedSearchEntries` stands in for Material's `SearchIndex.add_entry_from_context(page)`.
  Key: the page's HTML, URL, title, table of contents and front matter, the plugin's settings
  and Material's version. The stored value is the list of index entries the page added.

Each result is a pure function of its key, so a site built from the store is byte-identical to a
fresh one (tests/site/test_remember.py). The store is one JSON file per key under
build/cache/<kind>/ (named by the key's SHA-256), written atomically; after a build that
succeeded, the files it did not use are removed. A store that cannot be read or written costs
speed, never the build.

mkdocs installs both through its hooks (docs/hooks.py, listed in mkdocs.yml), so `atlas site`,
`atlas build`, `atlas serve` and a bare `mkdocs build` or `mkdocs serve` all use them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from atlas.text import write_atomic

CACHE = "build/cache"


class Store:
    """JSON values in one file per key under `folder`; remembers which keys a build used."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.used: set[str] = set()
        self.hits = self.misses = 0

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str):
        """The stored value, or None (never stored, or unreadable)."""
        self.used.add(key)
        try:
            value = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        self.hits += 1
        return value

    def put(self, key: str, value) -> None:
        self.used.add(key)
        self.misses += 1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / f"{key}.json", json.dumps(value))
        except OSError:
            pass  # an unwritable store only loses the speed-up

    def prune(self) -> None:
        """Remove what the build did not use (call after a build that finished)."""
        if self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                if path.stem not in self.used:
                    path.unlink(missing_ok=True)


class _StandIn:
    """A method of a library class replaced while installed, and put back by uninstall().

    A subclass names the method (`owner`, `name`) and defines `call(obj, *args, **kwargs)`, which
    receives what the library's method would and may use `self._original`.
    """

    owner: type
    name: str

    def __init__(self, folder: Path) -> None:
        self.store = Store(folder)
        self._original = None

    def install(self) -> None:
        if self._original is None:
            self._original = getattr(self.owner, self.name)
            stand_in = self

            def method(obj, *args, **kwargs):
                return stand_in.call(obj, *args, **kwargs)

            setattr(self.owner, self.name, method)

    def uninstall(self, prune: bool) -> None:
        """Put the library's method back; with prune=True (a build that finished) drop what it did not use."""
        if self._original is not None:
            setattr(self.owner, self.name, self._original)
            self._original = None
        if prune:
            self.store.prune()


class RememberedHighlighting(_StandIn):
    """pymdownx's Highlight.highlight(src, language, ...), from the store when it holds the result."""

    def __init__(self, folder: Path) -> None:
        import pygments
        import pymdownx
        from pymdownx.highlight import Highlight

        self.owner, self.name = Highlight, "highlight"
        self.versions = f"pygments {pygments.__version__}; pymdownx {pymdownx.__version__}"
        super().__init__(folder)

    def call(self, highlighter, *args, **kwargs):
        from xml.etree import ElementTree as etree

        if kwargs.get("title"):  # a title in HTML mode is put in the Markdown's stash: not a pure call
            return self._original(highlighter, *args, **kwargs)
        settings = sorted((k, repr(v)) for k, v in vars(highlighter).items() if k != "md")
        key = Store.key(self.versions, type(highlighter).__qualname__, settings, args, sorted(kwargs.items()))
        stored = self.store.get(key)
        if isinstance(stored, dict) and "html" in stored:
            return stored["html"]
        if isinstance(stored, dict) and {"tag", "attrib", "text"} <= stored.keys():
            element = etree.Element(stored["tag"], stored["attrib"])
            element.text = stored["text"]
            return element
        result = self._original(highlighter, *args, **kwargs)
        if isinstance(result, str):
            self.store.put(key, {"html": result})
        else:  # inline code: a <code> element whose text is the highlighted HTML
            self.store.put(key, {"tag": result.tag, "attrib": dict(result.attrib), "text": result.text})
        return result


def _toc(items) -> list:
    return [(item.id, item.url, item.title, item.level, _toc(item.children)) for item in items]


class RememberedSearchEntries(_StandIn):
    """Material's SearchIndex.add_entry_from_context(page), from the store when it holds the page's entries."""

    def __init__(self, folder: Path) -> None:
        from material import __version__ as material_version
        from material.plugins.search.plugin import SearchIndex

        self.owner, self.name = SearchIndex, "add_entry_from_context"
        self.versions = f"material {material_version}"
        super().__init__(folder)

    def call(self, index, page):
        settings = sorted((k, repr(v)) for k, v in index.config.items())
        meta = sorted((str(k), repr(v)) for k, v in page.meta.items())
        key = Store.key(self.versions, settings, page.url, page.title, _toc(page.toc), meta, page.content)
        stored = self.store.get(key)
        if isinstance(stored, list):
            index.entries.extend(stored)
            return None
        before = len(index.entries)
        result = self._original(index, page)
        self.store.put(key, index.entries[before:])
        return result


def stand_ins(root: Path) -> list[_StandIn]:
    """The stand-ins of a build of the site at root, not yet installed."""
    cache = Path(root) / CACHE
    return [RememberedHighlighting(cache / "highlight"), RememberedSearchEntries(cache / "search")]
