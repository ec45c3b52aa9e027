"""No URL a reader reaches from the site's links or by trimming a path ends in a directory listing:
every folder above a page has its index page, and the indexes of papers/, groups/ and notebooks/
link to every paper, group and notebook."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.loader import load

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_folder_above_a_page_has_an_index_page(built_site):
    site = built_site[0]
    missing = sorted(
        {
            folder.relative_to(site).as_posix()
            for page in site.rglob("*.html")
            for folder in page.parents
            if site in folder.parents and not (folder / "index.html").is_file()
        }
    )
    assert missing == []


@pytest.mark.slow
def test_the_papers_groups_and_notebooks_indexes_link_to_each_of_theirs(built_site):
    site = built_site[0]
    survey, _ = load(REPO, deep=False)
    papers = (site / "papers/index.html").read_text(encoding="utf-8")
    assert all(f'href="{key}/"' in papers for key in survey.entries)
    groups = (site / "groups/index.html").read_text(encoding="utf-8")
    assert all(f'href="{g.id}/"' in groups for g in survey.config.groups)
    notebooks = (site / "notebooks/index.html").read_text(encoding="utf-8")
    names = [p.stem for p in (REPO / "docs/notebooks").glob("*.py")]
    assert names and all(f'href="{name}/"' in notebooks for name in names)
