"""Every relative href/src of the built site resolves to a file of the site (and an anchor of
that page when it names one); no page loads anything from another host."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

RESOURCE_TAGS = {"script", "img", "link", "iframe", "source", "video", "audio", "embed", "object", "track"}


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src", "data"):
                self.refs.append((tag, name, value.strip()))
            elif name in ("id", "name"):
                self.anchors.add(value)


def _parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def _target(site: Path, page: Path, ref: str) -> tuple[Path, str]:
    base = "/" + page.relative_to(site).as_posix()
    url = urlparse(urljoin(base, ref))
    path = unquote(url.path)
    file = site / path.lstrip("/")
    if path.endswith("/"):
        file = file / "index.html"
    return file, unquote(url.fragment)


@pytest.mark.slow
def test_every_internal_link_resolves_and_nothing_loads_from_another_host(built_site):
    site = built_site[0]
    pages = sorted(site.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    broken, external, checked = [], [], 0
    for page, refs in parsed.items():
        for tag, attr, ref in refs.refs:
            url = urlparse(ref)
            if url.scheme in ("http", "https") or ref.startswith("//"):
                if tag in RESOURCE_TAGS or (tag == "link" and attr == "href"):
                    external.append(f"{page.relative_to(site)}: <{tag} {attr}={ref}>")
                continue
            if url.scheme or not ref or ref.startswith("#") and not ref[1:]:
                continue  # mailto:, data:, javascript:, an empty link
            target, fragment = _target(site, page, ref)
            checked += 1
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {ref} -> {target.relative_to(site)} (missing)")
            elif fragment and target.suffix == ".html":
                anchors = parsed[target].anchors if target in parsed else _parse(target).anchors
                if fragment not in anchors:
                    broken.append(f"{page.relative_to(site)}: {ref} (no anchor '{fragment}')")
    print(f"{len(pages)} pages, {checked} internal links checked")
    assert checked > 1000
    assert not broken, "\n".join(broken[:50])
    assert not external, "\n".join(external[:50])


@pytest.mark.slow
def test_no_page_or_stylesheet_asks_for_a_web_font_or_a_script_from_a_cdn(built_site):
    site = built_site[0]
    for path in list(site.rglob("*.html")) + list(site.rglob("*.css")):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, path
        assert '<script src="http' not in text and "url(http" not in text, path


@pytest.mark.slow
def test_no_address_of_a_page_or_its_parent_folders_is_a_directory_listing(built_site):
    """Every folder on the way to a page (papers/, groups/, notebooks/, source/...) has its own page."""
    site = built_site[0]
    missing = set()
    for page in site.rglob("index.html"):
        folder = page.parent
        while folder != site:
            folder = folder.parent
            if not (folder / "index.html").is_file():
                missing.add(folder.relative_to(site).as_posix() + "/")
    assert not missing, sorted(missing)
    for folder in ("papers", "groups", "notebooks", "modalities", "api", "source"):
        assert (site / folder / "index.html").is_file(), folder
