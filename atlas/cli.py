"""The `atlas` command: check the knowledge base, format the bib, export LaTeX, build the site.

Every subcommand prints problems as `path:line: what is wrong; what is expected`, one per line,
and exits 1 when there is any; it never prints a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer

from atlas.problems import AtlasError, Code, Problem, rel
from atlas.text import plural, write_atomic

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, powershell)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Latent Atlas: check the survey, format its bib, export it to LaTeX, build its site.",
)
bib_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Bibliography tools.")
app.add_typer(bib_app, name="bib")

CONFIG_NAME = "atlas.yml"


def find_root(start: Path) -> Path | None:
    """The nearest folder from start upward that holds atlas.yml (as git and mkdocs find theirs), or None."""
    start = start.resolve()
    return next((d for d in (start, *start.parents) if (d / CONFIG_NAME).is_file()), None)


def _root(value: Path | None) -> Path:
    """--root as given, else the folder found upward from the working folder; one line and exit 1 if none."""
    if value is not None:
        return value
    found = find_root(Path.cwd())
    if found is None:
        typer.echo(
            f"{CONFIG_NAME}:1: not found in {Path.cwd().resolve()} nor in any folder above it; "
            "run atlas inside the survey's folder, or pass --root PATH"
        )
        raise typer.Exit(1)
    return found


ROOT = typer.Option(
    None,
    "--root",
    help="The knowledge base's top folder (default: the nearest folder holding atlas.yml, from here upward).",
    file_okay=False,
    callback=_root,
)

QUIET = typer.Option(False, "--quiet", "-q", help="Print nothing but problems.")


def color_disabled() -> bool:
    """True under NO_COLOR (any non-empty value, https://no-color.org) or after --no-color."""
    return bool(os.environ.get("NO_COLOR"))


def disable_color() -> None:
    """No colour or style escape anywhere: typer's rich help and errors, rich progress, child processes."""
    import typer.rich_utils as rich_utils

    os.environ["NO_COLOR"] = "1"  # for rich consoles made later and for pytest, mkdocs and kernels we start
    rich_utils.COLOR_SYSTEM = None  # rich renders no style at all (NO_COLOR alone keeps bold and dim)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"atlas {version('latent-atlas')}")
        except PackageNotFoundError:
            typer.echo("atlas (not installed; pip install -e .)")
        raise typer.Exit()


def _no_color(value: bool) -> None:
    if value:
        disable_color()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    no_color: bool = typer.Option(
        False, "--no-color", callback=_no_color, is_eager=True, help="No colours or styles (as NO_COLOR=1 does)."
    ),
) -> None:
    """Latent Atlas: check the survey, format its bib, export it to LaTeX, build its site."""


def _fail(problems: list[Problem]) -> None:
    for p in problems:
        typer.echo(str(p))
    raise typer.Exit(1)


@app.command()
def check(
    root: Path = ROOT,
    strict: bool = typer.Option(False, "--strict", help="A paper of the bib without a note is an error."),
) -> None:
    """Load everything and report every problem, one line each."""
    from atlas.loader import load

    survey, problems = load(root)
    _check(survey, problems, strict)


def _check(survey, problems: list[Problem], strict: bool = False, quiet: bool = False) -> None:
    """Print the check's problems and exit 1, or its one-line summary."""
    from atlas.loader import BIB

    if survey is not None and strict:
        problems = problems + [
            Problem(BIB, survey.entries[k].line, f"paper '{k}' has no note", f"papers/{k}.md", Code.PENDING)
            for k in survey.pending
            if k not in survey.drafts
        ]
        problems += [
            Problem(
                f"papers/{k}.md",
                1,
                f"draft note, still missing {', '.join(missing)}",
                "a complete note (without --strict the check lists a draft as pending)",
                Code.PENDING,
            )
            for k, missing in survey.drafts.items()
        ]
    if problems:
        for p in problems:
            typer.echo(str(p))
        typer.echo(f"atlas check: {plural(len(problems), 'problem')}", err=True)
        raise typer.Exit(1)
    if quiet:
        return
    pending = survey.pending
    for k, missing in survey.drafts.items():
        typer.echo(f"pending: papers/{k}.md is a draft; still missing {', '.join(missing)}")
    modules = {m for n in survey.notes.values() for m in n.modules}
    tests = {t for n in survey.notes.values() for t in n.meta.tests}
    line = (
        f"atlas check: ok: {len(survey.entries)} papers in the bib, {len(survey.notes)} notes complete, "
        f"{len(modules)} modules, {len(tests)} test files, {len(pending)} pending"
    )
    shown = [k + (" (draft)" if k in survey.drafts else "") for k in pending]
    typer.echo(line + (": " + ", ".join(shown) if pending else ""))


@bib_app.command("fmt")
def bib_fmt(
    paths: list[Path] = typer.Argument(
        None, help="BibTeX files to format (default: the project's bib).", dir_okay=False
    ),
    root: Path = ROOT,
    check_only: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if a file is not in normal form."),
) -> None:
    """Rewrite bib files in the normal form (field order, indentation, braces, months as macros),
    converting non-ASCII letters to the LaTeX escapes the check asks for."""
    from atlas.bib import format_bib, parse_bib
    from atlas.loader import BIB

    targets = [(p, _shown(p)) for p in paths] if paths else [(root / BIB, BIB)]
    problems: list[Problem] = []
    for path, shown in targets:
        try:
            text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
        except (OSError, UnicodeDecodeError) as exc:
            what = f"cannot read the file ({exc.strerror or exc})" if isinstance(exc, OSError) else "not UTF-8"
            problems.append(Problem(shown, 1, what, "a readable UTF-8 BibTeX file", Code.FILE))
            continue
        try:
            formatted = format_bib(text, convert=True)
        except ValueError:
            problems += [p for p in parse_bib(text, shown)[1] if p.code in (Code.BIB_PARSE, Code.BIB_DUPLICATE)]
            continue
        left = [p for p in parse_bib(formatted, shown)[1] if p.code == Code.BIB_ENCODING]
        left = [
            Problem(p.path, p.line, p.message, "no LaTeX escape is known for it: write one by hand", p.code)
            for p in left
        ]
        if formatted == text:
            typer.echo(f"{shown}: already in normal form")
        elif check_only:
            first = next(
                i
                for i, (a, b) in enumerate(
                    zip(text.splitlines() + [""], formatted.splitlines() + [""], strict=False), 1
                )
                if a != b
            )
            problems.append(
                Problem(
                    shown,
                    first,
                    "not in the normal form",
                    "run `atlas bib fmt" + (f" {shown}`" if paths else "`"),
                    Code.BIB_PARSE,
                )
            )
            continue
        else:
            try:
                write_atomic(path, formatted)
            except OSError as exc:
                problems.append(_unwritable(shown, exc))
                continue
            typer.echo(f"{shown}: formatted")
        problems += left
    if problems:
        _fail(problems)


def _shown(path: Path) -> str:
    """A path as the user wrote it, or relative to the working folder."""
    return path.as_posix() if not path.is_absolute() else rel(path, Path.cwd())


def _unwritable(shown: str, exc: OSError) -> Problem:
    return Problem(shown, 1, f"cannot write ({exc.strerror or exc})", "a writable file in a writable folder", Code.FILE)


def _read_input(name: str) -> tuple[str, str | None, Problem | None]:
    """(shown name, text, problem): a file, or standard input for '-'."""
    if name == "-":
        if sys.stdin.isatty():
            typer.echo("atlas add: reading BibTeX from standard input (end with Ctrl-D)", err=True)
        data = sys.stdin.buffer.read()
        shown = "stdin"
    else:
        shown = name
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            return shown, None, Problem(shown, 1, f"cannot read the file ({exc.strerror or exc})", "a BibTeX file")
    try:
        return shown, data.decode("utf-8-sig").replace("\r\n", "\n"), None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return shown, None, Problem(shown, line, f"not UTF-8 (byte 0x{data[exc.start]:02x})", "a UTF-8 BibTeX file")


@app.command()
def add(
    files: list[str] = typer.Argument(
        None, help="BibTeX files (Zotero / Better BibTeX exports too); - or none: standard input."
    ),
    root: Path = ROOT,
    no_note: bool = typer.Option(False, "--no-note", help="Only the bib entries; no papers/<key>.md scaffold."),
) -> None:
    """Add papers: their BibTeX entries in the bib's normal form, and a note to fill in for each."""
    from atlas.bib import fold_title, format_entries, parse_bib
    from atlas.importer import normalise, scaffold_note
    from atlas.loader import BIB, CONFIG, PAPERS, load

    bib_path = root / BIB
    bib_text = bib_path.read_text(encoding="utf-8") if bib_path.is_file() else ""
    existing, _ = parse_bib(bib_text, BIB)
    problems: list[Problem] = []
    new: list[tuple[str, str, dict[str, str]]] = []
    dropped: dict[str, list[str]] = {}
    origin: dict[str, tuple[str, int]] = {}  # key -> (source, line) of the entries taken so far
    titles: dict[str, str] = {}  # folded title -> key, of the entries taken so far
    for name in files or ["-"]:
        shown, text, problem = _read_input(name)
        if problem is not None:
            problems.append(problem)
            continue
        result = normalise(text, shown, existing)
        problems += result.problems
        if not result.entries and not result.problems:
            problems.append(
                Problem(shown, 1, "no BibTeX entry found", "entries like @article{key, title = {...}, ...}")
            )
        for entry in result.entries:
            entry_type, key, fields = entry
            line = result.lines[key]
            folded = fold_title(fields.get("title", ""))
            if key in origin or (folded and folded in titles):
                other = key if key in origin else titles[folded]
                what = "is also" if key in origin else f"has the title of '{other}',"
                first = origin[other]
                problems.append(
                    Problem(shown, line, f"entry '{key}' {what} in {first[0]} (line {first[1]})", "one entry per paper")
                )
                continue
            # what the check holds the bib to: known type, required fields, year, arXiv id, ASCII
            _, entry_problems = parse_bib(format_entries([entry]), BIB)
            if entry_problems:
                problems += [Problem(shown, line, p.message, p.expected, p.code) for p in entry_problems]
                continue
            origin[key] = (shown, line)
            if folded:
                titles[folded] = key
            new.append(entry)
            if key in result.dropped:
                dropped[key] = result.dropped[key]
    if problems:
        _fail(problems)
    notes: dict[str, str] = {}
    if not no_note:
        survey, _ = load(root, deep=False)
        if survey is None:
            _fail(
                [Problem(CONFIG, 1, "unusable, so no note can be scaffolded", "run `atlas check`, or pass --no-note")]
            )
        notes = {key: scaffold_note(key, survey.config) for _, key, _ in new}
    written: list[Path] = []
    kept: list[str] = []
    try:
        for key, text in notes.items():
            path = root / PAPERS / f"{key}.md"
            if path.exists():
                kept.append(key)
                continue
            write_atomic(path, text)
            written.append(path)
        write_atomic(bib_path, (bib_text.rstrip("\n") + "\n\n" if bib_text.strip() else "") + format_entries(new))
    except OSError as exc:
        for path in written:  # nothing half-done: the notes go with the bib entries
            path.unlink(missing_ok=True)
        _fail([_unwritable(rel(Path(exc.filename), root) if exc.filename else BIB, exc)])
    typer.echo(f"atlas add: added {plural(len(new), 'paper')} to {BIB}")
    for _, key, _ in new:
        parts = []
        if key in dropped:
            parts.append("dropped " + ", ".join(dropped[key]) + " (not kept by the survey)")
        if key in kept:
            parts.append(f"kept the existing {PAPERS}/{key}.md")
        elif key in notes:
            parts.append(f"wrote {PAPERS}/{key}.md")
        typer.echo(f"  {key}" + (": " + "; ".join(parts) if parts else ""))
    keys = " ".join(k for _, k, _ in new)
    if notes:
        typer.echo(
            "next: fill in each note (the facets, the five sections), add its module and test "
            "(docs/contributing.md), then run `atlas check` (it lists what each paper still lacks) "
            f"and `atlas test {keys}`"
        )
    else:
        typer.echo(
            "next: `atlas check` lists the new papers as pending; `atlas add` without --no-note scaffolds their notes"
        )


@app.command("test")
def test_papers(
    keys: list[str] = typer.Argument(
        None, help="Bib keys of papers; none: the papers whose files changed since the last commit."
    ),
    root: Path = ROOT,
) -> None:
    """Run the tests (and the notebook, if any) of some papers through pytest; its exit status is returned."""
    import subprocess

    from atlas.loader import load
    from atlas.testrun import changed_files, select, touched_by

    survey, problems = load(root, deep=False)
    if survey is None:
        _fail(problems)
    if not keys:
        paths = changed_files(root)
        if paths is None:
            _fail(
                [
                    Problem(
                        ".", 1, "not a git checkout, so no change can be found", "name the papers: atlas test KEY ..."
                    )
                ]
            )
        why = touched_by(survey, paths)
        drafts = [k for k in survey.drafts if f"papers/{k}.md" in paths]
        for k in drafts:
            typer.echo(
                f"atlas test: papers/{k}.md changed but is a draft with no tests yet; "
                "`atlas check` tells what is missing"
            )
        if not why:
            if drafts:
                return
            if paths:
                typer.echo(
                    f"atlas test: {plural(len(paths), 'file')} changed since the last commit, none of them a paper's "
                    "note, module, test or notebook; nothing to run (name papers: atlas test KEY ...)"
                )
            else:
                typer.echo(
                    "atlas test: nothing changed since the last commit; nothing to run "
                    "(name papers: atlas test KEY ...)"
                )
            return
        typer.echo("atlas test: changed since the last commit:")
        for key, files in why.items():
            typer.echo(f"  {key}: {', '.join(files)}")
        keys = list(why)
    selection, problems = select(survey, keys)
    if problems:
        _fail(problems)
    if not selection.pytest_args():
        typer.echo(f"atlas test: {', '.join(selection.keys)} list no test file and no notebook; nothing to run")
        return
    command = [sys.executable, "-m", "pytest", *selection.pytest_args()]
    typer.echo("atlas test: " + " ".join(["python", *command[1:]]))
    sys.stdout.flush()
    code = subprocess.call(command, cwd=root)
    raise typer.Exit(code)


def main() -> None:
    if color_disabled() or "--no-color" in sys.argv[1:]:
        disable_color()  # before anything prints, help included
    try:
        app()
    except AtlasError as exc:
        for p in exc.problems:
            print(p)
        sys.exit(1)


def _export(root: Path, out: Path | None, force: bool, survey=None, quiet: bool = False, **overrides) -> None:
    """Export with atlas.yml's export settings, each overridden by a flag that was given (issue 12)."""
    from atlas.export import ExportOptions, bib_entries, render, write
    from atlas.export.paper import merge, write_all
    from atlas.loader import load_checked

    start = time.perf_counter()
    target = out if out is not None else root / "build" / "overleaf"
    shown = target.as_posix() if out is not None else "build/overleaf"
    _writable(target, root, "the export folder")  # what blocks the output is said before any work
    survey = survey or load_checked(root, deep=False)
    opts = ExportOptions.from_settings(survey.config.export, **overrides)
    rendered, problems = render(survey, opts)
    if problems:
        _fail(problems)
    assert rendered is not None
    merged = None
    if opts.into:
        # a flag's path is the current folder's; atlas.yml's `into:` is relative to atlas.yml
        base = Path.cwd() if overrides.get("into") else root
        paper = Path(opts.into) if Path(opts.into).is_absolute() else base / opts.into
        merged = merge(
            paper,
            opts.into,
            rendered.block,
            {k: e.fields for k, e in survey.entries.items()},
            lambda keys: bib_entries(survey, keys),
            force=force,
            appendix_tex=rendered.appendix,
        )
        if merged.problems:
            _fail(merged.problems)
    unchanged = target.is_dir() and all(
        (target / n).is_file() and (target / n).read_bytes() == b for n, b in rendered.files.items()
    )
    try:
        problems = write(target, rendered.files, force, shown)
    except OSError as exc:
        problems = [_unwritable(rel(Path(exc.filename), root) if exc.filename else shown, exc)]
    if problems:
        _fail(problems)
    changed = write_all(merged.texts) if merged else []
    if quiet:
        return
    f = rendered.figures
    if unchanged:
        typer.echo(f"atlas export: {shown}/ already up to date; changed nothing")
    else:
        typer.echo(f"atlas export: wrote {shown}/ ({', '.join(sorted(rendered.files))})")
    if merged:
        for line in merged.said:
            typer.echo(f"atlas export: {line}")
        names = " and ".join(str(p) for p in merged.texts)
        if changed:
            typer.echo(
                f"atlas export: wrote {' and '.join(str(p) for p in changed)} "
                "(the section between the markers, the cited entries in the atlas block of the .bib)"
            )
        else:
            typer.echo(f"atlas export: {names} already up to date; changed nothing")
    table = f"a table of {f.rows} rows" if f.rows else "no table"
    typer.echo(
        f"atlas export: {f.length} section of {f.words} words, {f.cited} papers cited, {table}; "
        f"{time.perf_counter() - start:.2f} s"
    )


@app.command()
def export(
    root: Path = ROOT,
    out: Path = typer.Option(None, "--out", help="Output folder (default: build/overleaf under the root)."),
    length: str = typer.Option(
        None,
        "--length",
        help="short (core papers, ~200-350 words), column (~450-700, the default) or full (every paper).",
    ),
    style: str = typer.Option(
        None,
        "--style",
        help="synthesis (the default) or catalogue (adds the per-paper paragraphs as appendix-papers.tex).",
    ),
    group: list[str] = typer.Option([], "--group", help="Only these groups (ids of atlas.yml); repeatable."),
    paper: list[str] = typer.Option([], "--paper", help="Only these papers (bib keys); repeatable."),
    facet: list[str] = typer.Option(
        [], "--facet", help="Only papers with this facet value, e.g. prior=autoregressive; repeatable."
    ),
    words: int = typer.Option(
        None, "--words", help="A cap on the section's words; units are dropped by priority to honour it."
    ),
    paper_words: int = typer.Option(None, "--paper-words", help="Catalogue style: the word budget of each paper."),
    table: str = typer.Option(
        None, "--table", help="compact (at most 12 rows, one column; the default) or full (every paper, table*)."
    ),
    no_table: bool = typer.Option(False, "--no-table", help="No comparison table."),
    into: str = typer.Option(
        None,
        "--into",
        help=(
            "Also write the section between the marker comments of this paper .tex, "
            "and its entries into the paper's .bib."
        ),
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite files, or text between markers, edited by hand since the last export."
    ),
) -> None:
    """Write the related-work section, its bib, the comparison table, a preview main.tex and overleaf.zip.

    Every option defaults to atlas.yml's export section; a flag overrides it for this run only.
    """
    _export(
        root,
        out,
        force,
        length=length,
        style=style,
        groups=group,
        papers=paper,
        facets=facet,
        words=words,
        paper_words=paper_words,
        table="none" if no_table else table,
        into=into,
    )


@app.command()
def build(
    root: Path = ROOT,
    force: bool = typer.Option(False, "--force", help="Overwrite export files edited by hand since the last export."),
    quiet: bool = QUIET,
) -> None:
    """The main job: check the knowledge base once, then build the site (site/) and the export \
(atlas.yml's settings)."""
    from atlas.loader import load

    _writable(root / "site", root, "the site folder")
    _writable(root / "build" / "overleaf", root, "the export folder")
    survey, problems = load(root)
    _check(survey, problems, quiet=quiet)
    _site(root, survey, quiet=quiet)
    _export(root, None, force, survey=survey, quiet=quiet)


def _writable(target: Path, root: Path, what: str) -> None:
    """Exit 1 with one line when something in the way stops writing the output folder target."""
    from atlas.outputs import blocked

    problems = blocked(target, root, what)
    if problems:
        _fail(problems)


SITE_STAGES = ["load", "notebooks", "pages", "mkdocs"]


def _site(root: Path, survey=None, quiet: bool = False) -> None:
    """Build the site of `survey` (loaded from root when None) into root/site, showing its stages.

    mkdocs writes a fresh folder beside site/, swapped in only when the build succeeded: a failed
    build leaves the previous site as it was.
    """
    from atlas.loader import load
    from atlas.outputs import replace_folder
    from atlas.progress import Stages
    from atlas.site import build as build_site

    start = time.perf_counter()
    target = root / "site"
    _writable(target, root, "the site folder")
    _writable(root / "build" / "notebooks", root, "the notebooks' output folder")
    stages = Stages("atlas site", SITE_STAGES, quiet=quiet)
    problems: list[Problem] = []

    def fill(fresh: Path) -> bool:
        nonlocal survey, problems
        if survey is None:
            stages.stage("load")
            survey, problems = load(root, deep=False)
            if problems:
                return False
        problems, _log = build_site(root, fresh, survey=survey, stages=stages)
        return not problems

    try:
        replace_folder(target, fill)
    except OSError as exc:
        problems = [_unwritable(rel(Path(exc.filename), root) if exc.filename else "site", exc)]
    finally:
        stages.finish()
    if problems:
        _fail(problems)
    if not quiet:
        pages = sum(1 for _ in target.rglob("index.html"))
        typer.echo(f"atlas site: wrote site/ ({pages} pages) in {time.perf_counter() - start:.1f} s")


@app.command()
def site(root: Path = ROOT, quiet: bool = QUIET) -> None:
    """Build the survey website into site/ (mkdocs build --strict; every page generated from the survey)."""
    _site(root, quiet=quiet)


# What the live preview watches: everything the site is made from (build/ is not, it is written by the build).
WATCHED = ["papers", "bib", "atlas.yml", "reference_impls", "tests/reference_impls", "docs", "mkdocs.yml", "related"]


@app.command()
def notebook(
    name: str = typer.Argument(..., help="A notebook of docs/notebooks/, e.g. ar_sampling."),
    root: Path = ROOT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
) -> None:
    """Run one notebook top to bottom (into build/notebooks/NAME.ipynb) and print its time."""
    from atlas.notebooks import run_one

    target, seconds = run_one(root, name, quiet=quiet)
    shown = target.relative_to(root).as_posix() if target.is_relative_to(root) else target.as_posix()
    typer.echo(f"atlas notebook: {target.stem} ran in {seconds:.1f} s; wrote {shown}")


@app.command()
def serve(
    root: Path = ROOT,
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port on 127.0.0.1."),
    watch: bool = typer.Option(
        False, "--watch", help="Live preview: build, then rebuild and reload the browser when a source file changes."
    ),
) -> None:
    """Serve the built site (site/) on http://127.0.0.1:PORT until interrupted; --watch for a live preview."""
    import functools
    from http.server import ThreadingHTTPServer

    if watch:
        _serve_watch(root, port)
        return
    site_dir = root / "site"
    if not (site_dir / "index.html").is_file():
        _fail([Problem("site/index.html", 1, "the site is not built", "run `atlas site` or `atlas build` first")])

    handler = functools.partial(site_handler(), directory=str(site_dir))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        _fail([_port_problem(port, exc)])
    with httpd:
        typer.echo(f"atlas serve: http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            typer.echo("atlas serve: stopped")


def site_handler():
    """The request handler of `atlas serve`: files of the site, 404 for a folder without index.html
    (never a directory listing), no log lines."""
    from http import HTTPStatus
    from http.server import SimpleHTTPRequestHandler

    class SiteHandler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def list_directory(self, path):
            self.send_error(HTTPStatus.NOT_FOUND, "Not found")
            return None

    return SiteHandler


def _port_problem(port: int, exc: OSError) -> Problem:
    return Problem(
        "mkdocs.yml", 1, f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})", "a free port: --port N"
    )


def _serve_watch(root: Path, port: int) -> None:
    """mkdocs' live-reload server over a preview built by atlas.site, rebuilt when a watched file changes.

    A build that fails prints its problems (one line each) and keeps the last good preview on screen.
    """
    import shutil
    import socket
    import tempfile

    from mkdocs.livereload import LiveReloadServer

    from atlas.loader import load
    from atlas.outputs import replace_folder
    from atlas.site import build as build_site

    try:  # mkdocs binds only once serving; find a busy port now, with one line
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            port = port or probe.getsockname()[1]
    except OSError as exc:
        _fail([_port_problem(port, exc)])
    preview = Path(tempfile.mkdtemp(prefix="atlas-preview-")) / "site"

    def rebuild() -> None:
        start = time.perf_counter()
        problems: list[Problem] = []

        def fill(fresh: Path) -> bool:
            nonlocal problems
            survey, problems = load(root, deep=False)
            if not problems:
                problems, _log = build_site(root, fresh, survey=survey)
            return not problems

        try:
            replace_folder(preview, fill)
        except OSError as exc:
            problems = [_unwritable(str(preview), exc)]
        for p in problems:
            typer.echo(str(p))
        if problems:
            typer.echo("atlas serve: the preview keeps its last good build; fix the lines above (saving rebuilds)")
        else:
            typer.echo(f"atlas serve: built in {time.perf_counter() - start:.1f} s")

    server = LiveReloadServer(builder=rebuild, host="127.0.0.1", port=port, root=str(preview))
    watched = [name for name in WATCHED if (root / name).exists()]
    for name in watched:
        server.watch(str(root / name))
    try:
        rebuild()
        if not (preview / "index.html").is_file():
            preview.mkdir(parents=True, exist_ok=True)
        typer.echo(f"atlas serve: http://127.0.0.1:{port}/ (live preview; watching {', '.join(watched)}; Ctrl-C stops)")
        server.serve()
    except KeyboardInterrupt:
        typer.echo("atlas serve: stopped")
    finally:
        server.shutdown()
        shutil.rmtree(preview.parent, ignore_errors=True)
