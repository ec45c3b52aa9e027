"""Output folders (site/, build/overleaf/, build/notebooks/): find what blocks a write before
writing, and replace a folder whole, so that a failed build leaves the previous output as it was.

`blocked(target, root)` names the first thing on the way to `target` that would stop a write: a
file where a folder should be, a folder that cannot be written, something that is not a folder
at all. `replace_folder(target, fill)` has `fill` write a fresh folder beside the target and then
swaps it in with two renames; the old folder is removed only after the swap succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from atlas.problems import Code, Problem, rel


def _problem(path: Path, root: Path, what: str, todo: str) -> Problem:
    return Problem(rel(path, root), 1, what, todo, Code.FILE)


def blocked(target: Path, root: Path, what: str = "the output folder") -> list[Problem]:
    """One problem naming what stops writing the folder `target` (under root), or none."""
    target, root = Path(target), Path(root)
    parts = [target, *target.parents]
    under = root == target or root in target.parents
    chain = list(reversed([p for p in parts if not under or p == root or root in p.parents]))
    for path in chain:
        if path.is_symlink() and not path.exists():
            return [_problem(path, root, "a broken symbolic link where a folder should be", "remove the link")]
        if not path.exists():
            break
        if not path.is_dir():
            kind = "a file" if path.is_file() else "something that is not a folder"
            return [
                _problem(path, root, f"{kind} where {what} should be", f"move or delete {rel(path, root)}, then rerun")
            ]
    existing = next((p for p in chain[::-1] if p.is_dir()), None)
    parent = target.parent if target.parent.is_dir() else existing
    if parent is None:
        return []
    try:  # a probe: can a new folder be made beside the target (and the target be renamed)?
        Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent)).rmdir()
    except OSError as exc:
        return [
            _problem(
                parent,
                root,
                f"cannot write in the folder ({exc.strerror or exc})",
                f"make it writable (chmod u+w {rel(parent, root)}), then rerun",
            )
        ]
    if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
        return [
            _problem(
                target,
                root,
                f"{what} is read-only",
                f"make it writable (chmod -R u+w {rel(target, root)}), then rerun",
            )
        ]
    return []


def replace_folder(target: Path, fill: Callable[[Path], bool]) -> bool:
    """Have fill(fresh folder) write the new output; when it returns True, swap it in for target.

    When fill returns False or raises, the fresh folder is removed and target is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        ok = fill(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if not ok:
        shutil.rmtree(fresh, ignore_errors=True)
        return False
    fresh.chmod(0o755)  # mkdtemp makes it private; the site is served and read by others
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    try:
        os.replace(fresh, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return True
