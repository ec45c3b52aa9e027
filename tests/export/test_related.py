"""The related-work texts: parsing, the check that holds them to the survey, and cutting by sentence priority."""

from __future__ import annotations

import pytest
import yaml
from export_kb import TEXTS, with_related

from atlas.loader import load
from atlas.related import compose, drop_citations, parse_related, prose_words


def problems_of(root):
    _, problems = load(root, deep=False)
    return [str(p) for p in problems]


def test_a_complete_small_knowledge_base_has_no_problem(good_kb):
    assert problems_of(with_related(good_kb)) == []


def test_units_carry_their_level_line_and_paragraph():
    text, problems = parse_related(
        "x", "related/x.md", "# Title\n\n{short} One [@a].\n{full} Two\nwraps.\n\n{column} Three.\n"
    )
    assert not problems and text.title == "Title"
    assert [(u.level, u.line, u.paragraph, u.text) for u in text.units] == [
        ("short", 3, 0, "One [@a]."),
        ("full", 4, 0, "Two wraps."),
        ("column", 7, 1, "Three."),
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Loose text.\n", "related/x.md:1: text outside a tagged unit"),
        ("{tiny} A unit.\n", "related/x.md:1: unknown tag '{tiny}'"),
        ("{short}\n", "related/x.md:1: the {short} unit is empty"),
    ],
)
def test_malformed_texts_get_one_line_each(source, expected):
    _, problems = parse_related("x", "related/x.md", source)
    assert [str(p).split(";")[0] for p in problems] == [expected]


def test_a_new_paper_of_a_group_not_cited_in_its_text_is_reported_with_file_and_line(good_kb):
    root = with_related(good_kb)
    note = (root / "papers" / "oord2017neural.md").read_text()
    (root / "papers" / "razavi2019generating.md").write_text(
        note.replace("key: oord2017neural", "key: razavi2019generating").replace("short: VQ-VAE", "short: VQ-VAE-2")
    )
    texts = dict(
        TEXTS,
        **{
            "discrete-tokenizers": "{short} Discrete tokenizers map a signal to codebook indices [@oord2017neural].\n"
            "{column} A hierarchy of maps adds detail.\n"
        },
    )
    with_related(root, texts)
    found = [p for p in problems_of(root) if "is not cited" in p]
    assert found == [
        "related/discrete-tokenizers.md:2: paper 'razavi2019generating' (VQ-VAE-2) of group 'discrete-tokenizers' "
        "is not cited in its text; a unit citing [@razavi2019generating] (tag it {full} at least), in this text"
    ]


def test_an_excluded_paper_need_not_be_cited_and_leaves_the_section(good_kb):
    root = with_related(good_kb)
    note = root / "papers" / "oord2017neural.md"
    note.write_text(
        note.read_text().replace(
            "tests: [tests/check_vq.py]\n",
            "tests: [tests/check_vq.py]\n"
            "relevance: {level: excluded, reason: a paper outside the scope of this test}\n",
        )
    )
    survey, problems = load(root, deep=False)
    assert not [p for p in problems if "not cited" in p.message]
    section, _ = compose(survey, "full")
    assert "oord2017neural" not in section.keys
    assert "razavi2019generating" in section.keys  # a bracket keeps its other keys
    assert "oord2017neural" in survey.notes  # the note and its page stay


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        ("{column} It compresses the signal [@oord2017neural].", "opens with 'It', whose subject is outside it"),
        ("{column} The paper compresses the signal [@oord2017neural].", "opens with 'The paper'"),
        (
            "{full} A first unit.\n{column} However, a second unit.",
            "opens with 'However' but the unit before it is dropped",
        ),
        (
            "{column} Our prior is class-conditional like this [@oord2017neural].",
            "a sentence about our work says 'class-conditional'",
        ),
        ("{column} Our work generates images [@oord2017neural].", "a sentence about our work says 'images'"),
        (
            "{column} Our transformer prior reads the tokens in raster order [@oord2017neural].",
            "a sentence about our work says 'Our transformer', but only that our prior is autoregressive",
        ),
        ("{column} A citation of @nobody2020x here.", "citation '@nobody2020x' is not a key"),
    ],
)
def test_the_check_holds_each_unit_to_the_rules(good_kb, unit, message):
    texts = dict(TEXTS, intro=TEXTS["intro"] + unit + "\n")
    found = problems_of(with_related(good_kb, texts))
    assert any(message in p and p.startswith("related/intro.md:") for p in found), found


def test_short_units_cite_only_core_papers(good_kb):
    root = with_related(good_kb)
    note = root / "papers" / "oord2017neural.md"
    note.write_text(note.read_text().replace("prior: autoregressive", "prior: diffusion-discrete"))
    assert any("the short form cites 'oord2017neural', whose relevance is related" in p for p in problems_of(root))


def test_each_length_must_lie_in_its_word_range(good_kb):
    root = with_related(good_kb, lengths={"short": [100, 200], "column": [10, 90], "full": [10, 120]})
    assert any(p.startswith("related/:1: the short form has") and "100 to 200 words" in p for p in problems_of(root))


def test_lengths_nest_and_a_word_budget_is_never_exceeded(good_kb):
    survey, problems = load(with_related(good_kb), deep=False)
    assert not problems
    words = [compose(survey, length)[0].words for length in ("short", "column", "full")]
    assert words[0] < words[1] < words[2]
    full = compose(survey, "full")[0].words
    first = prose_words(survey.related.texts["intro"].units[0].text)  # the unit of highest priority
    seen = set()
    for budget in range(first, full + 5):
        section, problems = compose(survey, "full", words=budget)
        assert not problems and section.words <= budget
        seen.add(section.words)
    assert len(seen) > 3  # every budget is honoured: no floor makes small budgets equal
    section, problems = compose(survey, "full", words=first - 1)
    assert not section.paragraphs and [p.path for p in problems] == ["--words"]


def test_dropping_a_citation_keeps_the_bracket_or_drops_the_unit():
    def keep(k: str) -> bool:
        return k != "b"

    assert drop_citations("X uses codes [@a; @b].", keep) == "X uses codes [@a]."
    assert drop_citations("X uses codes [@b].", keep) is None
    assert drop_citations("@b uses codes [@a].", keep) is None
    assert prose_words("VQGAN [@a; @b] adds a loss, as @c shows.") == 7


def test_site_page_shows_each_length_the_conclusion_and_the_latex_to_copy(good_kb):
    from atlas.related import site_markdown

    survey, _ = load(with_related(good_kb), deep=False)
    page = site_markdown(survey, lambda length: f"\\section{{Related Work}} % {length}\n")
    for length in ("Short", "Column", "Full"):
        assert f"## {length} (" in page
    assert page.count("```latex") == 3 and "% column" in page
    assert "## Conclusion: what the papers show together" in page and "remain a simple design" in page


CONTRIBUTION = "We show that a codebook of a thousand codes suffices."


def with_contribution(root, contribution: str | None):
    texts = dict(TEXTS)
    texts["intro"] += (
        "{short +contribution} {{contribution}}\n{short -contribution} A neutral opening sentence stands here.\n"
    )
    with_related(root, texts)
    config = yaml.safe_load((root / "atlas.yml").read_text())
    config["our_work"]["contribution"] = contribution
    (root / "atlas.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    survey, problems = load(root, deep=False)
    return survey, [str(p) for p in problems]


def test_the_opening_states_the_authors_contribution_only_when_the_profile_has_one(good_kb):
    survey, problems = with_contribution(good_kb, CONTRIBUTION)
    assert problems == []
    opening = " ".join(u.text for p in compose(survey, "short")[0].paragraphs for u in p.units if p.name == "intro")
    assert CONTRIBUTION in opening and "A neutral opening" not in opening
    survey, problems = with_contribution(good_kb, None)
    assert problems == []
    opening = " ".join(u.text for p in compose(survey, "short")[0].paragraphs for u in p.units if p.name == "intro")
    assert "{{contribution}}" not in opening and "A neutral opening sentence stands here." in opening


def test_a_novelty_claim_outside_a_contribution_unit_is_reported(good_kb):
    texts = dict(TEXTS)
    texts["conclusion"] += "{column} Our work is the first to fit such a prior.\n"
    with_related(good_kb, texts)
    problems = problems_of(good_kb)
    assert any(
        p.startswith("related/conclusion.md:5: 'is the first' claims novelty") or "claims novelty" in p
        for p in problems
    ), problems
    texts["conclusion"] = TEXTS["conclusion"] + "{column} The placeholder {{contribution}} without its tag.\n"
    with_related(good_kb, texts)
    assert any("{{contribution}} in a unit kept without a contribution" in p for p in problems_of(good_kb))
