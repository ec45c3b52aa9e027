"""Building the site: mkdocs' Python API in this process, the Survey handed to the page generator.

`build(root, site_dir, survey)` runs `mkdocs build --strict` of root/mkdocs.yml. mkdocs calls
docs/gen_site.py (a mkdocs-gen-files script), which asks `generate_pages` for the pages: they are
planned from the Survey that build() was given, so `atlas build` loads the knowledge base once.
When mkdocs runs on its own (`mkdocs build`, `mkdocs serve`), generate_pages loads the Survey itself.
mkdocs' warnings and errors are taken from its logging, as records, and returned as Problems.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from atlas.model import Survey
from atlas.problems import AtlasError, Code, Problem
from atlas.progress import Stages

MKDOCS_ENV = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
EXPECTED = "a build without warnings (mkdocs build --strict)"

_handed: dict[Path, Survey] = {}  # root -> the Survey of the build under way
_stages: dict[Path, Stages] = {}  # root -> the progress display of the build under way (atlas.progress)
_failed: dict[Path, list[Problem]] = {}  # root -> the problems that stopped the page generator


def generate_pages(root: Path):
    """For docs/gen_site.py: the SitePlan of the handed-over Survey (or of a fresh load), notebooks run first.

    Raises mkdocs' PluginError, after recording the problems for build(), when the survey has any.
    """
    from mkdocs.exceptions import PluginError

    from atlas.loader import load_checked
    from atlas.notebooks import run_all
    from atlas.site.plan import plan

    root = Path(root).resolve()
    stages = _stages.get(root)
    try:
        survey = _handed.get(root) or load_checked(root, deep=False)
        if stages is not None:
            stages.stage("notebooks")
            with stages.pause():
                notebooks = _run_notebooks(run_all, root, stages.mode == "quiet")
            stages.stage("pages")
        else:
            notebooks = run_all(root)
        pages = plan(survey, notebooks)
        if stages is not None:
            stages.stage("mkdocs")
        return pages
    except AtlasError as exc:
        _failed[root] = exc.problems
        raise PluginError("\n".join(str(p) for p in exc.problems)) from None


def _run_notebooks(run_all, root: Path, quiet: bool):
    """run_all, quiet when the build is (run_all takes quiet= once it reports its own progress)."""
    import inspect

    if "quiet" in inspect.signature(run_all).parameters:
        return run_all(root, quiet=quiet)
    return run_all(root)


NOTEBOOK_HTML_CACHE = "build/mkdocs-jupyter"


def _anchor_caches(config, root: Path) -> None:
    """mkdocs-jupyter keeps each notebook's HTML in a cache folder relative to the working folder
    (.cache/mkdocs-jupyter): anchored at root/build/, a warm build finds it from wherever `atlas`
    runs, and nothing is written into papers/ or any other folder the command was started from."""
    jupyter = config.plugins.get("mkdocs-jupyter")
    if jupyter is not None and not Path(jupyter.config["cache_dir"]).is_absolute():
        jupyter.config["cache_dir"] = str(root / NOTEBOOK_HTML_CACHE)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def build(
    root: Path, site_dir: Path | None = None, survey: Survey | None = None, stages: Stages | None = None
) -> tuple[list[Problem], str]:
    """`mkdocs build --strict` of the survey at root into site_dir (default root/site).

    Returns (problems, the log of the build); problems is empty when it succeeded with no warning.
    `stages` (atlas.progress) is told when the notebooks, the pages and mkdocs' rendering start.
    """
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    root = Path(root).resolve()
    target = Path(site_dir).resolve() if site_dir else root / "site"
    os.environ.update(MKDOCS_ENV)
    if survey is not None:
        _handed[root] = survey
    if stages is not None:
        _stages[root] = stages
    _failed.pop(root, None)
    logger = logging.getLogger("mkdocs")
    handler, level, propagate = _Records(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    failure = None
    try:
        config = load_config(config_file=str(root / "mkdocs.yml"), site_dir=str(target), strict=True)
        _anchor_caches(config, root)
        config.plugins.on_startup(command="build", dirty=False)
        try:
            mkdocs_build(config)
        finally:
            config.plugins.on_shutdown()
    except MkDocsException as exc:  # Abort (a warning in strict mode, a plugin's error), a bad configuration
        failure = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        _handed.pop(root, None)
        _stages.pop(root, None)
    log = "\n".join(f"{r.levelname:<8}-  {r.getMessage()}" for r in handler.records)
    if root in _failed:
        return _failed.pop(root), log
    problems = [
        Problem("mkdocs.yml", 1, f"mkdocs build: {r.getMessage()}", EXPECTED, Code.BUILD)
        for r in handler.records
        if r.levelno >= logging.WARNING
    ]
    if failure and not problems:
        problems = [Problem("mkdocs.yml", 1, f"mkdocs build failed ({failure})", "a build that exits 0", Code.BUILD)]
    return problems, log
