"""The survey model: atlas.yml's configuration, a note's front matter, the repository's
inventory, and the loaded Survey.

Everything downstream (check, site, export) reads a `Survey`; only atlas.loader builds one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from atlas.bib import BibEntry
from atlas.related import ExportSettings, RelatedTexts  # issue 12: the export's settings, the related-work texts

SECTIONS = ("Summary", "In brief", "Method", "Similarity to our work", "Difference from our work", "Implementation")
FACETS = ("modality", "latent", "prior", "conditioning")


def as_list(value: str | list[str] | None) -> list[str]:
    """A facet's values as a list, whether the facet holds one value (latent, prior) or many."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def module_of(dotted: str) -> str:
    """reference_impls.clip.rerank -> clip (the module file under reference_impls/)."""
    return dotted.split(".")[1]


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    title: str
    intro: str


class OurWork(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    summary: str
    latent: str
    prior: str
    modality: list[str] = Field(default_factory=list)
    conditioning: list[str] = Field(default_factory=list)
    # what the paper adds, in the author's words (one or two sentences); the export opens and closes on it
    contribution: str | None = None
    # our row of the comparison table: column id -> value, only what the author states
    table: dict[str, str] = Field(default_factory=dict)
    # what else the author states, so that notes and texts may say it (atlas.claims): the prior's
    # network, the training (losses, codebook updates), the sampler, the size, the generation order
    network: str | None = None
    training: str | None = None
    sampling: str | None = None
    size: str | None = None
    order: str | None = None


class AtlasConfig(BaseModel):
    """atlas.yml: the vocabularies (value -> description), the groups and the our-work profile."""

    model_config = ConfigDict(extra="forbid")
    vocabularies: dict[str, dict[str, str]]
    groups: list[Group]
    our_work: OurWork
    export: ExportSettings = Field(default_factory=ExportSettings)  # issue 12: the export's lasting choices

    @field_validator("vocabularies")
    @classmethod
    def _all_facets(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        missing = [f for f in FACETS if f not in v]
        if missing:
            raise PydanticCustomError(
                "facets",
                "vocabularies lack {missing}; expected all of: {all}",
                {"missing": ", ".join(missing), "all": ", ".join(FACETS)},
            )
        return v

    def group(self, gid: str) -> Group:
        return next(g for g in self.groups if g.id == gid)


def _vocab_error(facet: str, value: object, allowed: list[str]) -> PydanticCustomError:
    return PydanticCustomError(
        "vocabulary",
        "unknown {facet} '{value}'; expected one of: {allowed}",
        {"facet": facet, "value": value, "allowed": ", ".join(allowed)},
    )


RELEVANCE = ("core", "related", "background", "excluded")
DISCRETE_LATENTS = ("vq", "rq", "dvae", "sq")  # a token grid from a learned quantiser


class KeyNumber(BaseModel):
    """One defining number of a paper, with where it comes from (paper section/table/appendix, or repo and path)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    what: str
    value: str | int | float
    source: str
    column: str | None = None  # the comparison table's column (atlas.yml export.table_columns) this number fills


class RelevanceOverride(BaseModel):
    """A note's own relevance to our work, overriding the computed one, with the reason."""

    model_config = ConfigDict(extra="forbid", strict=True)
    level: str
    reason: str

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v not in RELEVANCE:
            raise _vocab_error("relevance", v, list(RELEVANCE))
        return v

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if len(v.split()) < 3:
            raise PydanticCustomError(
                "reason", "relevance reason '{v}' is too short; expected a sentence saying why", {"v": v}
            )
        return v


class NoteMeta(BaseModel):
    """A note's front matter. Validated with the vocabularies passed as context={'config': AtlasConfig}."""

    model_config = ConfigDict(extra="forbid", strict=True)
    key: str
    short: str
    group: str
    modality: list[str]
    latent: str
    prior: str
    conditioning: list[str]
    builds_on: list[str] = Field(default_factory=list)
    implementation: list[str]
    tests: list[str]
    notebook: str | None = None
    numbers: list[KeyNumber] = Field(default_factory=list)  # the paper's defining numbers, each with its source
    aliases: list[str] = Field(default_factory=list)  # other names of the mechanism a reader may search for
    relevance: RelevanceOverride | None = None  # overrides the relevance computed from the facets

    @field_validator("group")
    @classmethod
    def _group(cls, v: str, info: ValidationInfo) -> str:
        config: AtlasConfig = info.context["config"]
        ids = [g.id for g in config.groups]
        if v not in ids:
            raise _vocab_error("group", v, ids)
        return v

    @field_validator("latent", "prior")
    @classmethod
    def _single(cls, v: str, info: ValidationInfo) -> str:
        allowed = list(info.context["config"].vocabularies[info.field_name])
        if v not in allowed:
            raise _vocab_error(info.field_name, v, allowed)
        return v

    @field_validator("modality", "conditioning")
    @classmethod
    def _many(cls, v: list[str], info: ValidationInfo) -> list[str]:
        allowed = list(info.context["config"].vocabularies[info.field_name])
        for item in v:
            if item not in allowed:
                raise _vocab_error(info.field_name, item, allowed)
        if not v:
            raise PydanticCustomError(
                "empty",
                "{facet} is empty; expected at least one of: {allowed}",
                {"facet": info.field_name, "allowed": ", ".join(allowed)},
            )
        return v

    @field_validator("implementation")
    @classmethod
    def _dotted(cls, v: list[str]) -> list[str]:
        for item in v:
            if not re.fullmatch(r"reference_impls(\.[A-Za-z_]\w*)+", item):
                raise PydanticCustomError(
                    "dotted",
                    "implementation '{item}' is not a dotted path inside reference_impls; "
                    "expected e.g. reference_impls.vq or reference_impls.vq.VectorQuantizer",
                    {"item": item},
                )
        if not v:
            raise PydanticCustomError(
                "empty", "implementation is empty; expected at least one dotted path inside reference_impls"
            )
        return v


@dataclass
class Note:
    path: Path
    meta: NoteMeta
    body: str  # Markdown after the front matter
    body_line: int  # 1-based line of the body's first line in the file
    key_lines: dict[str, int]  # front-matter key -> 1-based line
    sections: dict[str, str] = field(default_factory=dict)  # '## Title' -> its Markdown
    valid: bool = True  # False when the front matter failed validation (the note is then left out)
    missing: list[str] | None = None  # a draft (no prose yet): what it still lacks; None when not a draft

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def where(self) -> str:
        """The note's path as problems name it: papers/<file name>."""
        return f"papers/{self.path.name}"

    @property
    def modules(self) -> list[str]:
        """The reference_impls modules the note's implementation lies in, in order, each once."""
        return list(dict.fromkeys(module_of(d) for d in self.meta.implementation))

    def facet(self, name: str) -> list[str]:
        return as_list(getattr(self.meta, name))


@dataclass(frozen=True)
class Member:
    """A public function or class defined at the top of a reference_impls module."""

    name: str  # VectorQuantizer
    kind: str  # "class" or "function"
    summary: str  # the first paragraph of its docstring, on one line ("" when it has none)


@dataclass(frozen=True)
class Module:
    name: str  # vq
    path: str  # reference_impls/vq.py
    summary: str  # the first paragraph of its docstring, on one line
    members: tuple[Member, ...] = ()  # its public classes and functions, in source order


@dataclass(frozen=True)
class TestFile:
    path: str  # tests/reference_impls/test_vq.py
    tests: int  # test functions in it


@dataclass(frozen=True)
class Question:
    title: str
    page: str  # inside docs/: questions/<name>.md


@dataclass
class Inventory:
    """What the repository holds beside the notes, read once by the loader for the site."""

    modules: list[Module] = field(default_factory=list)
    test_files: list[TestFile] = field(default_factory=list)
    notebooks: list[str] = field(default_factory=list)  # docs/notebooks/<name>.py
    questions: list[Question] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # repository path -> text, for the source views

    @property
    def test_count(self) -> int:
        return sum(t.tests for t in self.test_files)


@dataclass
class Comparison:
    facet: str
    theirs: list[str]
    ours: list[str]
    shared: bool


@dataclass
class Survey:
    root: Path
    config: AtlasConfig
    entries: dict[str, BibEntry]  # bib order
    notes: dict[str, Note]  # key order of the bib
    inventory: Inventory = field(default_factory=Inventory)
    related: RelatedTexts = field(default_factory=RelatedTexts)  # issue 12: related/*.md, parsed by atlas.related
    drafts: dict[str, list[str]] = field(default_factory=dict)  # key -> what its draft note still lacks

    @property
    def pending(self) -> list[str]:
        """Papers of the bib without a complete note: no note at all, or a draft (see `drafts`)."""
        return [k for k in self.entries if k not in self.notes]

    def year(self, key: str) -> str:
        return self.entries[key].year

    def notes_by_year(self, notes: list[Note] | None = None) -> list[Note]:
        """The notes (all, or those given), oldest first, then by key."""
        chosen = self.notes.values() if notes is None else notes
        return sorted(chosen, key=lambda n: (self.entries[n.key].year, n.key))

    def modalities_in_use(self) -> list[str]:
        """The modalities of atlas.yml that some note has, in the vocabulary's order."""
        used = {v for n in self.notes.values() for v in n.meta.modality}
        return [v for v in self.config.vocabularies["modality"] if v in used]

    def users_of_module(self, module: str) -> list[str]:
        """Keys of the notes whose implementation lies in reference_impls/<module>.py, sorted."""
        return sorted(k for k, n in self.notes.items() if module in n.modules)

    def in_group(self, gid: str) -> list[Note]:
        """Notes of a group, oldest first, then by key."""
        return self.notes_by_year([n for n in self.notes.values() if n.meta.group == gid])

    def built_upon_by(self, key: str) -> list[str]:
        return sorted(k for k, n in self.notes.items() if key in n.meta.builds_on)

    def relevance(self, note: Note) -> str:
        """core, related, background or excluded: the note's override, else computed from its facets.

        core: a discrete token latent (vq, rq, dvae, sq) with the profile's prior; related: the
        profile's latent or its prior, but not both in that sense; background: neither.
        """
        if note.meta.relevance is not None:
            return note.meta.relevance.level
        ours = self.config.our_work
        same_prior = note.meta.prior == ours.prior
        if same_prior and note.meta.latent in DISCRETE_LATENTS:
            return "core"
        if same_prior or note.meta.latent == ours.latent:
            return "related"
        return "background"

    def compare(self, note: Note) -> list[Comparison]:
        """The note's facets against the our-work profile (only the facets the profile sets)."""
        ours = self.config.our_work
        out = []
        for facet in FACETS:
            mine = as_list(getattr(ours, facet))
            if not mine:
                continue
            theirs = note.facet(facet)
            out.append(Comparison(facet, theirs, mine, bool(set(theirs) & set(mine))))
        return out
