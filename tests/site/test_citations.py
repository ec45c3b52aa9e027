"""Citations of note bodies become links to the cited paper's page (fast; no mkdocs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.loader import load
from atlas.site import plan, render_citations

PAGE = "papers/oord2017neural.md"
TITLE = "Neural Discrete Representation Learning"


@pytest.fixture
def survey(good_kb: Path):
    survey, problems = load(good_kb, deep=False)
    assert survey is not None and not problems, problems
    return survey


def render(survey, text: str) -> str:
    return render_citations(text, survey, PAGE)


def test_textual_citation_is_author_year_link_with_the_title_on_hover(survey):
    out = render(survey, "As @razavi2019generating showed.")
    entry = survey.entries["razavi2019generating"]
    assert out == f'As [{entry.author_short} ({entry.year})](razavi2019generating.md "{entry.title}") showed.'


def test_bracket_citation_keeps_prefix_locator_and_every_key(survey):
    out = render(survey, "Codes [see @oord2017neural, p. 3; @razavi2019generating].")
    a, b = survey.entries["oord2017neural"], survey.entries["razavi2019generating"]
    assert out == (
        f'Codes (see [{a.author_short}, {a.year}](oord2017neural.md "{TITLE}"), p. 3; '
        f'[{b.author_short}, {b.year}](razavi2019generating.md "{b.title}")).'
    )


def test_links_are_relative_to_the_page_that_cites(survey):
    out = render_citations("[@oord2017neural]", survey, "groups/discrete-tokenizers.md")
    assert "(../papers/oord2017neural.md " in out


def test_code_math_and_escaped_at_signs_are_left_alone(survey):
    text = (
        "Inline `@oord2017neural`, math $a@b$, an address me@example.org and \\@oord2017neural.\n\n"
        "```\n@oord2017neural\n```\n"
    )
    out = render(survey, text)
    assert "`@oord2017neural`" in out and "$a@b$" in out and "me@example.org" in out
    assert "&#64;oord2017neural" in out and "\n@oord2017neural\n" in out
    assert "](" not in out


def test_suppressed_author_gives_the_year_only(survey):
    a = survey.entries["oord2017neural"]
    assert render(survey, "VQ-VAE [-@oord2017neural]") == f'VQ-VAE ([{a.year}](oord2017neural.md "{TITLE}"))'


def test_a_bracket_that_is_not_a_citation_group_keeps_its_keys_as_textual_citations(survey):
    a, b = survey.entries["oord2017neural"], survey.entries["razavi2019generating"]
    out = render(survey, "[compare @oord2017neural with @razavi2019generating]")
    assert out == (
        f'[compare [{a.author_short} ({a.year})](oord2017neural.md "{TITLE}") with '
        f'[{b.author_short} ({b.year})](razavi2019generating.md "{b.title}")]'
    )


def test_plan_makes_a_page_per_bib_entry_group_and_modality(survey):
    site = plan(survey, figures=False)
    for key in survey.entries:
        assert f"papers/{key}.md" in site.files
    for g in survey.config.groups:
        assert f"groups/{g.id}.md" in site.files
    assert "modalities/image.md" in site.files
    page = site.files["papers/oord2017neural.md"]
    for part in (
        "## BibTeX",
        "```` bibtex" if "````" in page else "``` bibtex",
        "## Reference implementation",
        "### `reference_impls.vq`",
        "[API of reference_impls.vq](../api/vq.md)",
        "### Builds on",
        "### Built upon by",
        "Facets shared with our work",
    ):
        assert part in page, part
    assert "razavi2019generating" in site.files["pending.md"]
    assert "| [VQ-VAE](papers/oord2017neural.md" in site.files["table.md"]
