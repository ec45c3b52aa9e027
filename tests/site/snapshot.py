"""The generated site as data: every page path with the sha256 of its content, and of the inputs.

    .venv/bin/python tests/site/snapshot.py            # compare the site of this checkout with the snapshot
    .venv/bin/python tests/site/snapshot.py --update   # record a new snapshot (after a reviewed change)
    .venv/bin/python tests/site/snapshot.py --dump DIR # write every generated page under DIR, to diff two trees

The snapshot (tests/site/snapshots/site.json) holds the page set of `atlas.site.plan` for this
repository and each page's sha256, together with a digest of the inputs it was made from (atlas.yml,
the bib, the notes, reference_impls/, their tests, the notebooks' and questions' sources). A change
to the tooling must leave the pages as they were unless a change of output was meant; tests/site/
test_snapshot.py holds it while the inputs are those of the snapshot. Executed notebooks
(`notebooks/*.ipynb`) are recorded by name only: their outputs are not the tooling's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "site.json"
INPUTS = (
    "atlas.yml",
    "bib/*.bib",
    "papers/*.md",
    "reference_impls/*.py",
    "tests/reference_impls/*.py",
    "docs/notebooks/*.py",
    "docs/questions/*.md",
)


def inputs_digest(root: Path) -> str:
    h = hashlib.sha256()
    for pattern in INPUTS:
        for path in sorted(root.glob(pattern)):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def pages(root: Path) -> dict[str, str | bytes]:
    """{site path: content} of the generated site, notebooks stood in by their names."""
    from atlas.loader import load
    from atlas.site import plan

    survey, problems = load(root, deep=False)
    assert survey is not None and not problems, [str(p) for p in problems]
    notebooks = {p.stem: p for p in sorted((root / "docs" / "notebooks").glob("*.py"))}
    files = plan(survey, notebooks).files
    return {k: (b"executed notebook" if k.endswith(".ipynb") else v) for k, v in files.items()}


def digest(files: dict[str, str | bytes]) -> dict[str, str]:
    return {
        k: hashlib.sha256(v if isinstance(v, bytes) else v.encode("utf-8")).hexdigest()
        for k, v in sorted(files.items())
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="record the snapshot of this checkout")
    parser.add_argument("--dump", type=Path, help="write every generated page under this folder")
    args = parser.parse_args()
    files = pages(REPO)
    if args.dump:
        for k, v in files.items():
            out = args.dump / k
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(v if isinstance(v, bytes) else v.encode("utf-8"))
        print(f"{len(files)} pages written under {args.dump}")
    now = {"inputs": inputs_digest(REPO), "pages": digest(files)}
    if args.update:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{SNAPSHOT.relative_to(REPO)}: {len(files)} pages recorded")
        return 0
    if args.dump:
        return 0
    old = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    if old["inputs"] != now["inputs"]:
        print("the inputs differ from the snapshot's: the comparison below includes content changes")
    changed = sorted(k for k in old["pages"].keys() & now["pages"].keys() if old["pages"][k] != now["pages"][k])
    gone, new = sorted(old["pages"].keys() - now["pages"].keys()), sorted(now["pages"].keys() - old["pages"].keys())
    for label, keys in (("changed", changed), ("gone", gone), ("new", new)):
        for k in keys:
            print(f"{label}: {k}")
    print(f"{len(now['pages'])} pages: {len(changed)} changed, {len(gone)} gone, {len(new)} new")
    return 1 if changed or gone or new else 0


if __name__ == "__main__":
    sys.exit(main())
