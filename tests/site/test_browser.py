"""The built site in a real browser (Chromium, headless, offline): search finds the RQ-VAE page,
which shows typeset math, the BibTeX block and the reference implementation; nothing is requested
from another host and the console stays free of errors; the comparison table sorts by any column
(relevance by its rank) and fits the content width or scrolls inside it. Readers' queries are in
test_search.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from browser import ARGS, CHROMIUM, need_chromium  # tests/site/browser.py: pytest puts this folder on the path

from atlas.model import RELEVANCE

KEY = "lee2022autoregressive"


# Text of the article outside code, with KaTeX's own markup removed: a '$' left here is raw math.
VISIBLE_TEXT = """() => {
  const art = document.querySelector("article").cloneNode(true);
  art.querySelectorAll("pre, code, .katex, script, style").forEach(e => e.remove());
  return art.innerText;
}"""


@pytest.mark.slow
def test_search_finds_rq_vae_and_its_page_renders_offline(served_site: str, tmp_path: Path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    base = served_site
    host = urlparse(base).netloc
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(base + "/", wait_until="load")
            page.locator("label.md-search__icon, .md-search__input").first.click()
            box = page.locator('input[data-md-component="search-query"]')
            box.press_sequentially("residual quantization", delay=20)
            page.wait_for_selector(".md-search-result__meta", timeout=20_000)
            page.wait_for_selector(f'.md-search-result__item a[href*="{KEY}"]', timeout=20_000)
            hits = page.locator(".md-search-result__item a").evaluate_all("as => as.map(a => a.href)")
            assert any(KEY in h for h in hits), hits

            page.locator(f'.md-search-result__item a[href*="{KEY}"]').first.click()
            page.wait_for_url(f"**/papers/{KEY}/**")
            page.wait_for_load_state("networkidle")
            page.wait_for_selector(".katex", timeout=10_000)

            assert page.locator("h1").first.inner_text().startswith("RQ-VAE")
            assert page.locator(".katex").count() > 10
            assert page.locator(".arithmatex .katex-display").count() >= 1
            assert "$" not in page.evaluate(VISIBLE_TEXT)
            assert page.locator(".atlas-math-error, .katex-error").count() == 0

            bib = page.locator("#bibtex ~ div.highlight pre, #bibtex + div pre").first
            assert "@inproceedings{lee2022autoregressive" in bib.inner_text()
            assert (
                page.locator(
                    '#bibtex + div.highlight button[data-md-type="copy"], #bibtex + div.highlight button.md-clipboard'
                ).count()
                == 1
            )

            impl = page.locator("#reference-implementation")
            assert impl.count() == 1
            assert page.locator('a[href*="source/reference_impls/residual_vq"]').count() >= 1
            assert page.locator('a[href*="source/tests/reference_impls/test_residual_vq"]').count() >= 1

            shot = tmp_path / "rq_vae.png"
            page.screenshot(path=str(shot), full_page=False)
            print(f"screenshot: {shot}")

            # the module's API is rendered once, on its API page: a member listed here opens its entry there
            members = page.locator('a[href*="api/residual_vq/#reference_impls.residual_vq."]')
            assert members.count() >= 2
            anchor = members.first.get_attribute("href").split("#", 1)[1]
            members.first.click()
            page.wait_for_url("**/api/residual_vq/**")
            target = page.locator(f'[id="{anchor}"]')
            assert target.count() == 1 and target.is_visible()
            assert page.locator(".doc.doc-object").count() >= 2
        finally:
            browser.close()

    outside = [u for u in requests if urlparse(u).scheme not in ("data", "blob") and urlparse(u).netloc != host]
    assert not outside, f"requests left the machine: {outside}"
    assert not errors, f"console errors: {errors}"


@pytest.mark.slow
def test_comparison_table_sorts_by_a_clicked_column(served_site: str):
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(served_site + "/table/", wait_until="load")
            table = page.locator(".atlas-sortable table").first  # the comparison table (the numbers table follows)

            def years() -> list[str]:
                return table.locator("tbody tr td:nth-child(6)").all_inner_texts()

            header = table.locator("thead th", has_text="Year")
            header.click()
            up = [int(y) for y in years()]
            assert up == sorted(up) and header.get_attribute("aria-sort") == "ascending"
            header.click()
            down = [int(y) for y in years()]
            assert down == sorted(up, reverse=True) and header.get_attribute("aria-sort") == "descending"
            latent = table.locator("thead th", has_text="Latent")
            latent.click()
            values = table.locator("tbody tr td:nth-child(3)").all_inner_texts()
            assert values == sorted(values, key=str.lower)
            table.locator("thead th", has_text="Relevance").click()
            ranks = [RELEVANCE.index(v) for v in table.locator("tbody tr td:nth-child(7)").all_inner_texts()]
            assert ranks == sorted(ranks) and ranks[0] == 0  # core first, then related, background
        finally:
            browser.close()


TABLE_BOX = """() => {
  const t = document.querySelector('.atlas-sortable table');
  const art = document.querySelector('article').getBoundingClientRect();
  const wrap = t.closest('.md-typeset__scrollwrap') || t;
  const r = t.getBoundingClientRect();  // the scroll box has Material's negative margins; the table does not
  return {table: t.scrollWidth, shown: t.clientWidth, wrap: wrap.scrollWidth, wrapShown: wrap.clientWidth,
          wrapOverflow: getComputedStyle(wrap).overflowX, tableOverflow: getComputedStyle(t).overflowX,
          right: r.right, articleRight: art.right, page: document.scrollingElement.scrollWidth,
          viewport: window.innerWidth};
}"""


@pytest.mark.slow
def test_comparison_table_fits_the_content_width_or_scrolls_inside_it(served_site: str):
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            for width in (1400, 1000, 700):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(served_site + "/table/", wait_until="load")
                box = page.evaluate(TABLE_BOX)
                assert box["page"] <= box["viewport"], (width, box)  # the page itself never scrolls sideways
                if width >= 1000:  # a desktop layout: every column shows, nothing is cut off
                    assert box["table"] <= box["shown"] + 1 and box["wrap"] <= box["wrapShown"] + 1, (width, box)
                    assert box["right"] <= box["articleRight"] + 1, (width, box)
                else:  # a phone: the table scrolls in its own box
                    assert box["wrap"] > box["wrapShown"], (width, box)
                    assert "auto" in (box["wrapOverflow"], box["tableOverflow"]), (width, box)
                page.close()
        finally:
            browser.close()
