"""mkdocs-gen-files script: writes the pages that atlas.site generates from the Survey.

It loads the knowledge base (atlas.loader.load_checked), executes the notebooks first when
atlas/notebooks.py exists (run_all caches them under build/notebooks/), then writes every page of
atlas.site.plan into the build and sets the navigation. Any problem stops the build with one
`path:line: what; expected` line per problem.
"""

from pathlib import Path

import mkdocs_gen_files
from mkdocs.exceptions import PluginError

from atlas.loader import load_checked
from atlas.problems import AtlasError
from atlas.site import CitationError, check_citations, plan

config = mkdocs_gen_files.config
root = Path(config.config_file_path).resolve().parent

try:
    survey = load_checked(root, deep=False)
    check_citations(survey)
    notebooks = {}
    if (root / "atlas" / "notebooks.py").is_file():
        from atlas.notebooks import run_all

        notebooks = dict(run_all(root))
    site = plan(survey, notebooks)
except AtlasError as exc:
    raise PluginError("\n".join(str(p) for p in exc.problems)) from None
except CitationError as exc:
    raise PluginError(str(exc)) from None

for path, content in site.files.items():
    with mkdocs_gen_files.open(path, "wb" if isinstance(content, bytes) else "w") as fh:
        fh.write(content)
config.nav = site.nav
