"""One problem found in the knowledge base: a file, a line, what is wrong and what is expected.

Every problem carries a `Code`, the kind of fault it is; code that must tell problems apart (the
bib formatter, the loader's follow-up checks) compares codes, never message text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Code(Enum):
    """The kind of a problem."""

    FILE = "file"  # unreadable, binary, not UTF-8, not a note, missing
    YAML = "yaml"  # YAML syntax
    SCHEMA = "schema"  # a field of atlas.yml or of a note's front matter: unknown, missing, wrong type or value
    BIB_PARSE = "bib-parse"  # an entry that does not parse
    BIB_DUPLICATE = "bib-duplicate"  # a key or a title twice
    BIB_FIELD = "bib-field"  # a missing or malformed field, an unknown type
    BIB_ENCODING = "bib-encoding"  # a non-ASCII character
    NOTE_KEY = "note-key"  # key against file name and bib, a second note
    LINEAGE = "lineage"  # builds_on
    CITATION = "citation"  # a citation key not in the bib
    IMPLEMENTATION = "implementation"  # a module that does not import or does not name its note
    TESTS = "tests"  # a missing test file, or one that imports none of the note's modules
    NOTEBOOK = "notebook"  # a missing notebook
    SECTION = "section"  # a missing or empty section, the word count
    MATH = "math"  # a stray dollar, unbalanced braces
    CLAIM = "claim"  # a statement about our work beyond atlas.yml's profile
    NUMBER = "number"  # a number of the Method section that the note does not list
    ALIAS = "alias"  # an alias that is empty, repeated or the paper's short name
    PENDING = "pending"  # a paper of the bib without a note (check --strict)
    BUILD = "build"  # the site build (mkdocs) or a notebook run
    OPTION = "option"  # a command-line option
    OTHER = "other"


@dataclass(frozen=True, order=True)
class Problem:
    path: str  # relative to the repository root, with forward slashes
    line: int  # 1-based
    message: str  # what is wrong
    expected: str = ""  # what would be right
    code: Code = field(default=Code.OTHER, compare=False)

    def __str__(self) -> str:
        tail = f"; {self.expected}" if self.expected else ""
        return f"{self.path}:{self.line}: {self.message}{tail}"


def rel(path: Path, root: Path) -> str:
    for p, r in ((path, root), (path.absolute(), root.resolve()), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).as_posix()  # the path as listed, symlinks not followed
        except ValueError:
            continue
    return path.as_posix()


class AtlasError(Exception):
    """A fatal problem that stops a command; carries the problems to print."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
