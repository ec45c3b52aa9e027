"""Chromium for the browser tests of the site (test_browser.py, test_search.py): Debian's build,
headless and offline, and the results Material's search box lists for a query."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RESULT_LINKS = ".md-search-result__list > .md-search-result__item > a"


def need_chromium() -> None:
    """Skip (or fail, with ATLAS_REQUIRE_SYSTEM=1) when Debian's Chromium is missing."""
    if Path(CHROMIUM).is_file() and shutil.which(CHROMIUM):
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
    if os.environ.get("ATLAS_REQUIRE_SYSTEM") == "1":
        pytest.fail(reason + " and ATLAS_REQUIRE_SYSTEM=1")
    pytest.skip(reason)


def open_search(page, base: str) -> None:
    """Open the site's home page and focus its search box."""
    page.goto(base + "/", wait_until="load")
    page.locator("label.md-search__icon, .md-search__input").first.click()


def _send(box, text: str) -> None:
    """Put `text` in the search box as one edit: Material reads the box on keyup and queries its worker once."""
    box.fill(text)
    box.press("End")


def result_pages(page, query: str) -> list[str]:
    """The distinct pages Material's search lists for `query`, in order.

    The box is emptied first (no results listed), then the whole query goes in as one edit (as a
    reader pastes it; typed key by key, only the last answer stays): the first non-empty list is
    the answer to it, read again until two reads agree."""
    box = page.locator('input[data-md-component="search-query"]')
    links = page.locator(RESULT_LINKS)
    _send(box, "")
    page.wait_for_function(f"() => document.querySelectorAll({RESULT_LINKS!r}).length === 0", timeout=20_000)
    _send(box, query)
    page.wait_for_function(f"() => document.querySelectorAll({RESULT_LINKS!r}).length > 0", timeout=20_000)
    hrefs = links.evaluate_all("as => as.map(a => a.pathname)")
    for _ in range(20):
        page.wait_for_timeout(150)
        again = links.evaluate_all("as => as.map(a => a.pathname)")
        if again == hrefs:
            break
        hrefs = again
    return list(dict.fromkeys(hrefs))
