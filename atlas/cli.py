"""The `atlas` command: check the knowledge base, format the bib, export LaTeX, build the site.

Every subcommand prints problems as `path:line: what is wrong; what is expected`, one per line,
and exits 1 when there is any; it never prints a traceback for bad input.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from atlas.problems import AtlasError, Code, Problem
from atlas.text import plural, write_atomic

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Latent Atlas: check the survey, format its bib, export it to LaTeX, build its site.",
)
bib_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Bibliography tools.")
app.add_typer(bib_app, name="bib")

ROOT = typer.Option(Path("."), "--root", help="The knowledge base's top folder.", file_okay=False)


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


def _check(survey, problems: list[Problem], strict: bool = False) -> None:
    """Print the check's problems and exit 1, or its one-line summary."""
    from atlas.loader import BIB

    if survey is not None and strict:
        problems = problems + [
            Problem(BIB, survey.entries[k].line, f"paper '{k}' has no note", f"papers/{k}.md", Code.PENDING)
            for k in survey.pending
        ]
    if problems:
        for p in problems:
            typer.echo(str(p))
        typer.echo(f"atlas check: {plural(len(problems), 'problem')}", err=True)
        raise typer.Exit(1)
    pending = survey.pending
    modules = {m for n in survey.notes.values() for m in n.modules}
    tests = {t for n in survey.notes.values() for t in n.meta.tests}
    line = (
        f"atlas check: ok: {len(survey.entries)} papers in the bib, {len(survey.notes)} notes complete, "
        f"{len(modules)} modules, {len(tests)} test files, {len(pending)} pending"
    )
    typer.echo(line + (": " + ", ".join(pending) if pending else ""))


@bib_app.command("fmt")
def bib_fmt(
    root: Path = ROOT,
    check_only: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if the bib is not in normal form."),
) -> None:
    """Rewrite bib/references.bib in its normal form (field order, indentation, braces)."""
    from atlas.bib import format_bib
    from atlas.loader import BIB

    path = root / BIB
    text = path.read_text(encoding="utf-8")
    try:
        formatted = format_bib(text)
    except ValueError:
        from atlas.bib import parse_bib

        _fail([p for p in parse_bib(text, BIB)[1] if p.code in (Code.BIB_PARSE, Code.BIB_DUPLICATE)])
    if formatted == text:
        typer.echo(f"{BIB}: already in normal form")
        return
    if check_only:
        first = next(
            i
            for i, (a, b) in enumerate(zip(text.splitlines() + [""], formatted.splitlines() + [""], strict=False), 1)
            if a != b
        )
        _fail([Problem(BIB, first, "not in the normal form", "run `atlas bib fmt`", Code.BIB_PARSE)])
    write_atomic(path, formatted)
    typer.echo(f"{BIB}: formatted")


def main() -> None:
    try:
        app()
    except AtlasError as exc:
        for p in exc.problems:
            print(p)
        sys.exit(1)


def _export(root: Path, out: Path | None, force: bool, survey=None, **overrides) -> None:
    """Export with atlas.yml's export settings, each overridden by a flag that was given (issue 12)."""
    from atlas.export import ExportOptions, bib_entries, render, write
    from atlas.export.paper import merge, write_all
    from atlas.loader import load_checked

    start = time.perf_counter()
    survey = survey or load_checked(root, deep=False)
    opts = ExportOptions.from_settings(survey.config.export, **overrides)
    rendered, problems = render(survey, opts)
    if problems:
        _fail(problems)
    assert rendered is not None
    target = out if out is not None else root / "build" / "overleaf"
    shown = target.as_posix() if out is not None else "build/overleaf"
    paper_texts = {}
    if opts.into:
        paper = Path(opts.into) if Path(opts.into).is_absolute() else root / opts.into
        paper_texts, problems = merge(paper, opts.into, rendered.block, set(survey.entries),
                                      lambda keys: bib_entries(survey, keys), force)
        if problems:
            _fail(problems)
    problems = write(target, rendered.files, force, shown)
    if problems:
        _fail(problems)
    write_all(paper_texts)
    f = rendered.figures
    typer.echo(f"atlas export: wrote {shown}/ ({', '.join(sorted(rendered.files))})")
    if paper_texts:
        typer.echo("atlas export: wrote " + " and ".join(str(p.relative_to(root) if p.is_relative_to(root) else p) for p in paper_texts)
                   + " (the section between the markers, the cited entries in the atlas block of the .bib)")
    table = f"a table of {f.rows} rows" if f.rows else "no table"
    typer.echo(f"atlas export: {f.length} section of {f.words} words, {f.cited} papers cited, {table}; "
               f"{time.perf_counter() - start:.2f} s")


@app.command()
def export(
    root: Path = ROOT,
    out: Path = typer.Option(None, "--out", help="Output folder (default: build/overleaf under the root)."),
    length: str = typer.Option(None, "--length", help="short (core papers, ~200-350 words), column (~450-700, the default) or full (every paper)."),
    style: str = typer.Option(None, "--style", help="synthesis (the default) or catalogue (adds the per-paper paragraphs as appendix-papers.tex)."),
    group: list[str] = typer.Option([], "--group", help="Only these groups (ids of atlas.yml); repeatable."),
    paper: list[str] = typer.Option([], "--paper", help="Only these papers (bib keys); repeatable."),
    facet: list[str] = typer.Option([], "--facet", help="Only papers with this facet value, e.g. prior=autoregressive; repeatable."),
    words: int = typer.Option(None, "--words", help="A cap on the section's words; units are dropped by priority to honour it."),
    paper_words: int = typer.Option(None, "--paper-words", help="Catalogue style: the word budget of each paper."),
    table: str = typer.Option(None, "--table", help="compact (at most 12 rows, one column; the default) or full (every paper, table*)."),
    no_table: bool = typer.Option(False, "--no-table", help="No comparison table."),
    into: str = typer.Option(None, "--into", help="Also write the section between the marker comments of this paper .tex, and its entries into the paper's .bib."),
    force: bool = typer.Option(False, "--force", help="Overwrite files, or text between markers, edited by hand since the last export."),
) -> None:
    """Write the related-work section, its bib, the comparison table, a preview main.tex and overleaf.zip.

    Every option defaults to atlas.yml's export section; a flag overrides it for this run only.
    """
    _export(root, out, force, length=length, style=style, groups=group, papers=paper, facets=facet, words=words,
            paper_words=paper_words, table="none" if no_table else table, into=into)


@app.command()
def build(root: Path = ROOT, force: bool = typer.Option(False, "--force", help="Overwrite export files edited by hand since the last export.")) -> None:
    """The main job: check the knowledge base, then build the site (site/) and the export (atlas.yml's export settings)."""
    from atlas.loader import load

    survey, problems = load(root)
    _check(survey, problems)
    _site(root, survey)
    _export(root, None, force, survey=survey)


def _site(root: Path, survey=None) -> None:
    """Build the site of `survey` (loaded from root when None) into root/site."""
    from atlas.loader import load
    from atlas.site import build as build_site

    start = time.perf_counter()
    if survey is None:
        survey, problems = load(root, deep=False)
        if problems:
            _fail(problems)
    problems, _log = build_site(root, survey=survey)
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
def serve(
    root: Path = ROOT, port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port on 127.0.0.1.")
) -> None:
    """Serve the built site (site/) on http://127.0.0.1:PORT until interrupted."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site_dir = root / "site"
    if not (site_dir / "index.html").is_file():
        _fail([Problem("site/index.html", 1, "the site is not built", "run `atlas site` or `atlas build` first")])

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site_dir))
    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        _fail(
            [
                Problem(
                    "site/index.html",
                    1,
                    f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})",
                    "a free port: --port N",
                )
            ]
        )
    with httpd:
        typer.echo(f"atlas serve: http://127.0.0.1:{httpd.server_address[1]}/ (Ctrl-C stops)")
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            typer.echo("atlas serve: stopped")
