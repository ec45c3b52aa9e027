"""How the site's search ranks pages: a paper's own page first for the terms of its Summary and Method,
its short name and its aliases.

Material's search (lunr) scores each index entry (a page, or one section of it under its heading) by
the query terms found in its fields, each term weighed by the field's boost (mkdocs.yml: plugins:
search: fields), and multiplies the score by the entry's boost; results are grouped by page, in the
order of each page's best entry. Material's defaults (title 1e3, text 1, tags 1e6) let one word of a
tag outweigh every other match, so a query sharing one generic word ("codebook") with another paper's
alias put that paper first; mkdocs.yml gives title and tags 10 instead, so the prose of a section
counts as well. Tags (a paper's short name and aliases, paper.md.j2) and titles (the short name and
the paper's title) still weigh ten times a word of prose.

The weights, from the front matter the generators write:

- a paper's page, `search: boost: PAPER_BOOST`, and within it `search: section_boost`: the Summary,
  In brief and Method weigh SECTION_BOOST times the page's boost, every other section (Implementation,
  Pitfalls, Key numbers, the module summaries, ...) OTHER_SECTIONS times; its lineage and BibTeX
  are left out of the index (`data-search-exclude`): they name other papers, or repeat the header;
- an API page, `search: boost: API_BOOST`: a function's name still finds its entry, while a paper
  whose note names the mechanism comes first;
- pages that list papers (groups, modalities, the paper, group and API indexes, the comparison
  table, Pitfalls) keep their title and introduction in the index and leave out their lists, which
  repeat what each paper's page holds: every text is indexed once, where it lives.

Material applies one boost per page; `weigh_sections` (run by docs/hooks.py after Material's search
plugin has indexed a page) multiplies each section's entry by its heading's weight.
tests/site/test_search.py holds the ranking in a browser with readers' queries.
"""

from __future__ import annotations

PAPER_BOOST = 4
API_BOOST = 0.5
SECTION_BOOST = {"summary": 4, "in-brief": 4, "method": 4}  # by heading id, times the page's boost
OTHER_SECTIONS = 0.25  # every other section of a paper's page, times the page's boost
EXCLUDE = "data-search-exclude"  # Material's attribute: the element (or the heading's section) is not indexed


def paper_search_meta() -> dict:
    """The `search:` front matter of a paper's page."""
    return {"boost": PAPER_BOOST, "section_boost": {**SECTION_BOOST, "*": OTHER_SECTIONS}}


def section_weight(weights: dict, anchor: str) -> float:
    """The weight of the section under the heading `anchor` ('' for the page's top entry, weight 1)."""
    if not anchor:
        return 1.0
    return float(weights.get(anchor, weights.get("*", 1.0)))


def weigh_sections(entries: list[dict], page_url: str, meta: dict) -> None:
    """Multiply the boost of each entry of the page at `page_url` by its section's weight, from the
    page's front matter `search: section_boost: {heading id: weight, "*": weight of the others}`.

    Material appends a page's entries to its index when it renders the page, so they are the last
    entries whose location is under page_url; entries of other pages are left alone."""
    search = meta.get("search") or {}
    weights = search.get("section_boost")
    if not isinstance(weights, dict):
        return
    boost = float(search.get("boost", 1.0))
    for entry in reversed(entries):
        location = entry.get("location", "")
        path, _, anchor = location.partition("#")
        if path != page_url:
            break
        entry["boost"] = round(boost * section_weight(weights, anchor), 6)
