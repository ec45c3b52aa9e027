"""Lineage: builds_on points back in time (one year of venue lag allowed) and never loops."""

from __future__ import annotations

from atlas import lineage
from atlas.loader import load


def _survey_with(good_kb, builds_on: dict[str, list[str]], years: dict[str, str]):
    survey, problems = load(good_kb, deep=False)
    assert not problems
    base = survey.notes["oord2017neural"]
    for key, year in years.items():
        if key not in survey.entries:
            entry = type(survey.entries["oord2017neural"])(key, "misc", {"title": key, "year": year}, 1)
            survey.entries[key] = entry
        survey.entries[key].fields["year"] = year
    for key, targets in builds_on.items():
        meta = base.meta.model_copy(update={"key": key, "builds_on": targets})
        survey.notes[key] = type(base)(
            base.path.with_name(f"{key}.md"), meta, base.body, base.body_line, {"builds_on": 9}
        )
    return survey


def test_building_on_a_paper_two_years_later_is_reported(good_kb):
    survey = _survey_with(good_kb, {"a2017": ["b2019"], "b2019": []}, {"a2017": "2017", "b2019": "2019"})
    (p,) = lineage.backwards(survey)
    assert str(p).startswith("papers/a2017.md:9: builds_on 'b2019' (2019) is 2 years later than this paper (2017)")


def test_one_year_of_venue_lag_is_accepted(good_kb):
    survey = _survey_with(good_kb, {"a2017": ["b2018"], "b2018": []}, {"a2017": "2017", "b2018": "2018"})
    assert lineage.backwards(survey) == []


def test_a_cycle_is_reported_once_with_its_path(good_kb):
    survey = _survey_with(good_kb, {"a": ["b"], "b": ["c"], "c": ["a"]}, {"a": "2020", "b": "2020", "c": "2020"})
    (p,) = lineage.cycles(survey)
    assert "builds_on runs in a cycle: a -> b -> c -> a" in str(p)


def test_no_cycle_in_a_tree(good_kb):
    survey = _survey_with(good_kb, {"a": ["b", "c"], "b": ["c"], "c": []}, {"a": "2020", "b": "2020", "c": "2020"})
    assert lineage.cycles(survey) == []
