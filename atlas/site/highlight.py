"""Syntax highlighting remembered between site builds, keyed by everything that determines it.

Highlighting is the largest single cost of a warm build: every source page (a module, a test file, a
notebook) and every signature mkdocstrings puts in an API heading goes through Pygments, although
the code rarely changes between two builds. Both superfences and mkdocstrings highlight through
`pymdownx.highlight.Highlight.highlight`; while a build runs, that method goes through
`RememberedHighlighting`, which returns the stored result when the code, the call's arguments, the
highlighter's settings, and the versions of Pygments and pymdownx are all what they were when it was
stored, and highlights otherwise. The result is a pure function of that key (a call with a title,
which may write into the Markdown instance, is never remembered), so a page built from the store is
byte-identical to a fresh one (tests/site/test_highlight.py).

The store is one JSON file per key under build/cache/highlight/ (named by the key's SHA-256),
written atomically; after a build that succeeded, the files it did not use are removed, so the store
holds what the current site needs. A store that cannot be read or written costs speed, never the
build: the call then highlights as usual.

mkdocs installs it through its hooks (docs/hooks.py, listed in mkdocs.yml), so `atlas
site`, `atlas build`, `atlas serve` and a bare `mkdocs build` or `mkdocs serve` all use it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from atlas.text import write_atomic

CACHE = "build/cache/highlight"


class RememberedHighlighting:
    """Stands in for pymdownx's Highlight.highlight while installed; see the module docstring."""

    def __init__(self, folder: Path) -> None:
        import pygments
        import pymdownx

        self.folder = Path(folder)
        self.versions = f"pygments {pygments.__version__}; pymdownx {pymdownx.__version__}"
        self.used: set[str] = set()
        self.hits = self.misses = 0
        self._original = None

    def key(self, highlighter, args: tuple, kwargs: dict) -> str:
        settings = sorted((k, repr(v)) for k, v in vars(highlighter).items() if k != "md")
        text = repr((self.versions, type(highlighter).__qualname__, settings, args, sorted(kwargs.items())))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def highlight(self, highlighter, *args, **kwargs):
        """Highlight.highlight(highlighter, src, language, ...), from the store when it holds the result."""
        from xml.etree import ElementTree as etree

        if kwargs.get("title"):  # a title in HTML mode is put in the Markdown's stash: not a pure call
            return self._original(highlighter, *args, **kwargs)
        key = self.key(highlighter, args, kwargs)
        self.used.add(key)
        path = self.folder / f"{key}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            self.hits += 1
            if "html" in stored:
                return stored["html"]
            element = etree.Element(stored["tag"], stored["attrib"])
            element.text = stored["text"]
            return element
        except (OSError, ValueError, KeyError, TypeError):
            pass
        result = self._original(highlighter, *args, **kwargs)
        self.misses += 1
        if isinstance(result, str):
            stored = {"html": result}
        else:  # inline code: a <code> element whose text is the highlighted HTML
            stored = {"tag": result.tag, "attrib": dict(result.attrib), "text": result.text}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(stored))
        except OSError:
            pass  # an unwritable store only loses the speed-up
        return result

    def install(self) -> None:
        from pymdownx.highlight import Highlight

        if self._original is None:
            self._original = Highlight.highlight
            remembered = self

            def highlight(highlighter, *args, **kwargs):
                return remembered.highlight(highlighter, *args, **kwargs)

            Highlight.highlight = highlight

    def uninstall(self, prune: bool) -> None:
        """Put pymdownx's method back; with prune=True (a build that finished) drop what it did not use."""
        from pymdownx.highlight import Highlight

        if self._original is not None:
            Highlight.highlight = self._original
            self._original = None
        if prune and self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                if path.stem not in self.used:
                    path.unlink(missing_ok=True)
