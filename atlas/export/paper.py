"""`atlas export --into PATH/paper.tex`: the section written into the user's own single-file paper.

AAAI wants the paper's source as one .tex file ("use of the input command is not allowed"), so
the section and its table go *between two marker comments* of the paper itself:

    % atlas:begin related-work
    % atlas:end related-work

and the entries it cites go into the paper's .bib (the first file of its `\\bibliography{...}`
that exists, else the first one named), inside a block of their own:

    % atlas:begin references
    % atlas:end references

The block of the .bib holds every survey entry that the paper cites anywhere (so a citation of a
survey paper elsewhere in the paper keeps its entry) and that the user's own entries, outside the
block, do not define; the user's entries are never touched. Each begin line records the SHA-256
of what atlas wrote between the markers: a second run writes the same bytes, and a hand edit
between the markers is refused unless forced. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from atlas.problems import Problem
from atlas.text import stage

MARK = re.compile(r"^% atlas:(begin|end) ([a-z-]+)(?: sha256=([0-9a-f]{64}))?[ \t]*$", re.M)
SECTION, REFERENCES = "related-work", "references"


@dataclass
class Block:
    begin: int  # offset of the begin line
    body_start: int  # offset after the begin line's newline
    body_end: int  # offset of the end line
    end: int  # offset after the end line (and its newline)
    recorded: str | None  # the sha256 on the begin line
    line: int  # 1-based line of the begin marker

    def body(self, text: str) -> str:
        return text[self.body_start : self.body_end]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def find_block(text: str, name: str, shown: str) -> tuple[Block | None, list[Problem]]:
    marks = [m for m in MARK.finditer(text) if m.group(2) == name]
    if not marks:
        return None, []
    kinds = [m.group(1) for m in marks]
    line = text.count("\n", 0, marks[0].start()) + 1
    if kinds != ["begin", "end"]:
        return None, [
            Problem(
                shown,
                line,
                f"the '{name}' markers are {len(kinds)} lines ({', '.join(kinds)})",
                f"exactly one '% atlas:begin {name}' line followed by one '% atlas:end {name}' line",
            )
        ]
    b, e = marks
    body_start = b.end() + 1 if text[b.end() : b.end() + 1] == "\n" else b.end()
    end = e.end() + 1 if text[e.end() : e.end() + 1] == "\n" else e.end()
    return Block(b.start(), body_start, e.start(), end, b.group(3), line), []


def _replace(
    text: str, block: Block, name: str, body: str, force: bool, shown: str
) -> tuple[str | None, list[Problem]]:
    old = block.body(text)
    if not force:
        if block.recorded is None and old.strip():
            return None, [
                Problem(
                    shown,
                    block.line,
                    f"text between the '{name}' markers was not written by atlas export",
                    "empty markers (move the text elsewhere), or pass --force to replace it",
                )
            ]
        if block.recorded is not None and _sha(old) != block.recorded:
            return None, [
                Problem(
                    shown,
                    block.line,
                    f"the text between the '{name}' markers was edited by hand since the last export",
                    "move the edit into related/*.md (or the notes), or pass --force to overwrite it",
                )
            ]
    begin = f"% atlas:begin {name} sha256={_sha(body)}\n"
    return text[: block.begin] + begin + body + text[block.body_end :], []


def bibliography_file(paper: Path, text: str) -> Path | None:
    """The .bib the paper's \\bibliography names: the first that exists, else the first named."""
    code = re.sub(r"(?<!\\)%.*", "", text)
    m = re.search(r"\\bibliography\{([^}]*)\}", code)
    if not m:
        return None
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    paths = [paper.parent / (n if n.endswith(".bib") else n + ".bib") for n in names]
    return next((p for p in paths if p.is_file()), paths[0] if paths else None)


def defined_keys(bib: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"@\s*[A-Za-z]+\s*[{(]\s*([^,\s]+)\s*,", bib)}


def merge(
    paper: Path, shown: str, block_tex: str, survey_keys: set[str], entries, force: bool
) -> tuple[dict[Path, str], list[Problem]]:
    """The new texts of the paper and its .bib, or the problems (nothing is written here).

    `entries(keys)` formats the survey's entries of `keys` (sorted) in the bib's normal form.
    """
    try:
        text = paper.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [
            Problem(
                shown,
                1,
                f"cannot read the paper ({getattr(exc, 'strerror', None) or exc})",
                "the path of the paper's main .tex file",
            )
        ]
    block, problems = find_block(text, SECTION, shown)
    if problems:
        return {}, problems
    if block is None:
        return {}, [
            Problem(
                shown,
                1,
                "the paper has no markers for the related-work section",
                "two lines '% atlas:begin related-work' and '% atlas:end related-work' where the section goes "
                "(for example after the introduction), then run the export again",
            )
        ]
    new_text, problems = _replace(text, block, SECTION, block_tex, force, shown)
    if problems:
        return {}, problems
    bib_path = bibliography_file(paper, new_text)
    if bib_path is None:
        return {}, [
            Problem(
                shown,
                1,
                "the paper has no \\bibliography{...}",
                "\\bibliography{references} where the reference list goes",
            )
        ]
    bib_shown = (Path(shown).parent / bib_path.name).as_posix()
    bib = bib_path.read_text(encoding="utf-8") if bib_path.is_file() else ""
    bib_block, problems = find_block(bib, REFERENCES, bib_shown)
    if problems:
        return {}, problems
    outside = bib if bib_block is None else bib[: bib_block.begin] + bib[bib_block.end :]
    cited = set()
    for m in re.finditer(r"\\(?:no)?cite[a-zA-Z]*\*?(?:\[[^\]]*\])*\{([^}]*)\}", re.sub(r"(?<!\\)%.*", "", new_text)):
        cited |= {k.strip() for k in m.group(1).split(",") if k.strip()}
    keys = sorted((cited & survey_keys) - defined_keys(outside))
    body = entries(keys)
    if bib_block is None:
        sep = "" if not bib or bib.endswith("\n\n") else ("\n" if bib.endswith("\n") else "\n\n")
        new_bib = bib + sep + f"% atlas:begin {REFERENCES} sha256={_sha(body)}\n" + body + f"% atlas:end {REFERENCES}\n"
    else:
        new_bib, problems = _replace(bib, bib_block, REFERENCES, body, force, bib_shown)
        if problems:
            return {}, problems
    return {paper: new_text, bib_path: new_bib}, []


def write_all(texts: dict[Path, str]) -> None:
    """Write each file beside itself and move it into place (unchanged files are left alone)."""
    staged = []
    for path, text in texts.items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        staged.append((stage(path, text), path))
    for tmp, path in staged:
        os.replace(tmp, path)
