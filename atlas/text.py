"""Small text and file helpers shared by the commands, the site and the notebooks runner."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 paper', '3 papers' (or the given plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def stage(path: Path, data: str | bytes) -> Path:
    """Write data beside path under a hidden temporary name and return that name (os.replace it in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if isinstance(data, bytes):
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write beside the target, then move into place: never a half-written file."""
    tmp = stage(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
