"""Relevance to our work: computed from the facets against atlas.yml's profile, overridable with a reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from atlas.loader import load
from atlas.model import NoteMeta


@pytest.fixture
def survey(good_kb):
    s, problems = load(good_kb, deep=False)
    assert not problems
    return s


def _with(survey, **facets):
    note = next(iter(survey.notes.values()))
    data = note.meta.model_dump() | facets
    meta = NoteMeta.model_validate(data, context={"config": survey.config})
    return type(note)(note.path, meta, note.body, note.body_line, note.key_lines)


@pytest.mark.parametrize(
    ("latent", "prior", "expected"),
    [
        ("vq", "autoregressive", "core"),
        ("rq", "autoregressive", "core"),  # any discrete token latent with our prior
        ("continuous-kl", "autoregressive", "related"),  # our prior, another latent
        ("vq", "diffusion-discrete", "related"),  # our latent, another prior
        ("continuous-kl", "diffusion-continuous", "background"),
    ],
)
def test_relevance_is_computed_from_latent_and_prior(survey, latent, prior, expected):
    assert survey.relevance(_with(survey, latent=latent, prior=prior)) == expected


def test_override_with_a_reason_wins_over_the_facets(survey):
    note = _with(
        survey,
        latent="vq",
        prior="autoregressive",
        relevance={"level": "excluded", "reason": "a speech codec outside the paper's scope"},
    )
    assert survey.relevance(note) == "excluded"


@pytest.mark.parametrize(
    "override",
    [
        {"level": "crucial", "reason": "a sentence that says why"},
        {"level": "core", "reason": "why"},
        {"level": "core"},
    ],
)
def test_override_needs_a_known_level_and_a_reason(survey, override):
    with pytest.raises(ValidationError):
        _with(survey, relevance=override)


def test_key_numbers_need_a_source(survey):
    _with(survey, numbers=[{"what": "codebook size", "value": 512, "source": "Sec. 4.1"}])
    with pytest.raises(ValidationError):
        _with(survey, numbers=[{"what": "codebook size", "value": 512}])
