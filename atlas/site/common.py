"""What every page of the site shares: its paths and links, how a paper is named, text escapes
for Markdown and YAML, and the Jinja2 environment of the page templates (atlas/site/templates)."""

from __future__ import annotations

import functools
import posixpath
import re

import jinja2

from atlas.bib import BibEntry, latex_to_text
from atlas.model import Survey
from atlas.text import plural

# ---------------------------------------------------------------------------------------------
# paths inside the site (docs/) and links between them


def link(src: str, dest: str) -> str:
    """The relative link from site page `src` to site file `dest` (both paths inside docs)."""
    return posixpath.relpath(dest, posixpath.dirname(src) or ".")


def paper_page(key: str) -> str:
    return f"papers/{key}.md"


def source_page(path: str) -> str:
    """The generated source view of a repository file: reference_impls/vq.py -> source/reference_impls/vq.md."""
    return f"source/{posixpath.splitext(path)[0]}.md"


def api_page(module: str) -> str:
    return f"api/{module}.md"


def group_page(gid: str) -> str:
    return f"groups/{gid}.md"


def modality_page(value: str) -> str:
    return f"modalities/{value}.md"


# ---------------------------------------------------------------------------------------------
# the bib as the site shows it (pylatexenc is slow: each distinct value is decoded once)


@functools.cache
def _decode(raw: str) -> str:
    return latex_to_text(raw) if raw else ""


@functools.cache
def _short_authors(raw: str) -> str:
    return BibEntry("", "misc", {"author": raw}, 1).author_short


def title_of(entry: BibEntry) -> str:
    return _decode(entry.get("title") or "")


def authors_of(entry: BibEntry) -> str:
    """'Lee et al.'"""
    return _short_authors(entry.get("author") or "")


def paper_name(survey: Survey, key: str) -> str:
    """A note's short name ('VQGAN'), or 'Lee et al. 2022' for a paper without a note."""
    note = survey.notes.get(key)
    return note.meta.short if note else authors_of(survey.entries[key]) + " " + survey.entries[key].year


# ---------------------------------------------------------------------------------------------
# escapes


def attr(text: str) -> str:
    """Text for a Markdown link title (no double quotes, no newlines)."""
    return re.sub(r"\s+", " ", text.replace('"', "'")).strip()


def yaml_str(text: str) -> str:
    """A YAML single-quoted scalar (no escapes to worry about)."""
    return "'" + re.sub(r"\s+", " ", text).strip().replace("'", "''") + "'"


def cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|")


def fence(code: str, lang: str, extra: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run of the code."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", code)), default=0) + 1)
    return f"{ticks} {lang}{(' ' + extra) if extra else ''}\n{code.rstrip()}\n{ticks}\n"


# ---------------------------------------------------------------------------------------------
# templates


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("atlas.site", "templates"),
        autoescape=False,  # the output is Markdown, escaped by the filters above where it needs it
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(attr=attr, yaml_str=yaml_str, cell=cell, fence=fence)
    env.globals.update(plural=plural)
    return env


def render(template: str, **data) -> str:
    """Lay out a page: atlas/site/templates/<template> with the data prepared by the caller."""
    return environment().get_template(template).render(**data)
