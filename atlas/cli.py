"""The `atlas` command: check the knowledge base, format the bib, export LaTeX, build the site.

Every subcommand prints problems as `path:line: what is wrong; what is expected`, one per line,
and exits 1 when there is any; it never prints a traceback for bad input.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import typer

from atlas.problems import AtlasError, Problem

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Latent Atlas: check the survey, format its bib, export it to LaTeX, build its site.")
bib_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Bibliography tools.")
app.add_typer(bib_app, name="bib")

ROOT = typer.Option(Path("."), "--root", help="The knowledge base's top folder.", file_okay=False)


def _fail(problems: list[Problem]) -> None:
    for p in problems:
        typer.echo(str(p))
    raise typer.Exit(1)


@app.command()
def check(root: Path = ROOT, strict: bool = typer.Option(False, "--strict", help="A paper of the bib without a note is an error.")) -> None:
    """Load everything and report every problem, one line each."""
    from atlas.loader import BIB, load

    survey, problems = load(root)
    if survey is not None and strict:
        problems += [Problem(BIB, survey.entries[k].line, f"paper '{k}' has no note", f"papers/{k}.md") for k in survey.pending]
    if problems:
        for p in problems:
            typer.echo(str(p))
        typer.echo(f"atlas check: {len(problems)} problem{'s' * (len(problems) != 1)}", err=True)
        raise typer.Exit(1)
    assert survey is not None
    pending = survey.pending
    modules = sorted({d.split(".")[1] for n in survey.notes.values() for d in n.meta.implementation})
    tests = sorted({t for n in survey.notes.values() for t in n.meta.tests})
    line = (f"atlas check: ok: {len(survey.entries)} papers in the bib, {len(survey.notes)} notes complete, "
            f"{len(modules)} modules, {len(tests)} test files, {len(pending)} pending")
    typer.echo(line + (": " + ", ".join(pending) if pending else ""))


@bib_app.command("fmt")
def bib_fmt(root: Path = ROOT, check_only: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if the bib is not in normal form.")) -> None:
    """Rewrite bib/references.bib in its normal form (field order, indentation, braces)."""
    from atlas.bib import format_bib
    from atlas.loader import BIB

    path = root / BIB
    text = path.read_text(encoding="utf-8")
    try:
        formatted = format_bib(text)
    except ValueError:
        from atlas.bib import parse_bib

        _fail([p for p in parse_bib(text, BIB)[1] if "parse" in p.message or "duplicate key" in p.message])
    if formatted == text:
        typer.echo(f"{BIB}: already in normal form")
        return
    if check_only:
        first = next(i for i, (a, b) in enumerate(zip(text.splitlines() + [""], formatted.splitlines() + [""]), 1) if a != b)
        _fail([Problem(BIB, first, "not in the normal form", "run `atlas bib fmt`")])
    write_atomic(path, formatted)
    typer.echo(f"{BIB}: formatted")


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then move into place: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main() -> None:
    try:
        app()
    except AtlasError as exc:
        for p in exc.problems:
            print(p)
        sys.exit(1)


def _export(root: Path, out: Path | None, groups: list[str], papers: list[str], facets: list[str],
            words: int, table: bool, force: bool) -> None:
    import time

    from atlas.export import ExportOptions, render, write
    from atlas.loader import load_checked

    start = time.perf_counter()
    survey = load_checked(root, deep=False)
    data, problems = render(survey, ExportOptions(groups, papers, facets, words, table))
    if problems:
        _fail(problems)
    target = out if out is not None else root / "build" / "overleaf"
    shown = target.as_posix() if out is not None else "build/overleaf"
    problems = write(target, data, force, shown)
    if problems:
        _fail(problems)
    cited = data["references.bib"].decode().count("\n@")
    typer.echo(f"atlas export: wrote {shown}/ ({', '.join(sorted(data))}; {cited} references) "
               f"in {time.perf_counter() - start:.2f} s")


@app.command()
def export(
    root: Path = ROOT,
    out: Path = typer.Option(None, "--out", help="Output folder (default: build/overleaf under the root)."),
    group: list[str] = typer.Option([], "--group", help="Only these groups (ids of atlas.yml); repeatable."),
    paper: list[str] = typer.Option([], "--paper", help="Only these papers (bib keys); repeatable."),
    facet: list[str] = typer.Option([], "--facet", help="Only papers with this facet value, e.g. prior=autoregressive; repeatable."),
    words: int = typer.Option(70, "--words", min=10, help="Word budget per paper."),
    table: bool = typer.Option(True, "--table/--no-table", help="Include the comparison table."),
    force: bool = typer.Option(False, "--force", help="Overwrite files edited by hand since the last export."),
) -> None:
    """Write the related-work section, its bib, the comparison table, a preview main.tex and overleaf.zip."""
    _export(root, out, group, paper, facet, words, table, force)


@app.command()
def build(root: Path = ROOT) -> None:
    """The main job: check the knowledge base, then build the site (site/) and the LaTeX export from it."""
    from atlas.loader import load_checked

    survey = load_checked(root)
    typer.echo(f"atlas check: ok: {len(survey.entries)} papers, {len(survey.notes)} notes")
    _site(root)
    _export(root, None, [], [], [], 70, True, False)


def _site(root: Path) -> None:
    import time

    from atlas.site import build as build_site

    start = time.perf_counter()
    problems, _log = build_site(root)
    if problems:
        _fail(problems)
    pages = sum(1 for _ in (root / "site").rglob("index.html"))
    typer.echo(f"atlas site: wrote site/ ({pages} pages) in {time.perf_counter() - start:.1f} s")


@app.command()
def site(root: Path = ROOT) -> None:
    """Build the survey website into site/ (mkdocs build --strict; every page generated from the survey)."""
    _site(root)


@app.command()
def notebook(name: str = typer.Argument(..., help="A notebook of docs/notebooks/, e.g. ar_sampling."), root: Path = ROOT,
             quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line.")) -> None:
    """Run one notebook top to bottom (into build/notebooks/NAME.ipynb) and print its time."""
    from atlas.notebooks import run_one

    target, seconds = run_one(root, name, quiet=quiet)
    shown = target.relative_to(root).as_posix() if target.is_relative_to(root) else target.as_posix()
    typer.echo(f"atlas notebook: {target.stem} ran in {seconds:.1f} s; wrote {shown}")


@app.command()
def serve(root: Path = ROOT, port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port on 127.0.0.1.")) -> None:
    """Serve the built site (site/) on http://127.0.0.1:PORT until interrupted."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site_dir = root / "site"
    if not (site_dir / "index.html").is_file():
        _fail([Problem("site/index.html", 1, "the site is not built", "run `atlas site` or `atlas build` first")])

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
            pass

    handler = functools.partial(Quiet, directory=str(site_dir))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        _fail([Problem("site/index.html", 1, f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})", "a free port: --port N")])
    with httpd:
        typer.echo(f"atlas serve: http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            typer.echo("atlas serve: stopped")
