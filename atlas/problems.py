"""One problem found in the knowledge base: a file, a line, what is wrong and what is expected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Problem:
    path: str  # relative to the repository root, with forward slashes
    line: int  # 1-based
    message: str  # what is wrong
    expected: str = ""  # what would be right

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
