"""The survey website, generated at build time from the loaded Survey and nothing else.

`plan(survey)` lays out every generated page (Markdown and figures, as {site path: content}) and
the navigation; `build(root, site_dir, survey)` runs mkdocs on it. Data is prepared in Python and
laid out by the Jinja2 templates of atlas/site/templates. Modules, by concern:

    common.py     paths and links, naming a paper, escapes, the template environment
    citations.py  citations of note bodies as links (the grammar is atlas.markdown's)
    papers.py     papers/<key>.md: a full page per note, a short one per pending paper
    overviews.py  index.md, groups/<id>.md, modalities/<value>.md, table.md, pending.md, figures.md
    code.py       api/index.md, api/<module>.md (mkdocstrings), source/<path>.md
    figures.py    figures/timeline.svg and figures/lineage.svg (matplotlib, networkx)
    plan.py       the whole site and its navigation
    build.py      mkdocs' Python API, the Survey handed to docs/gen_site.py, warnings as Problems
    remember.py   highlighting and search entries remembered between builds (docs/hooks.py)
"""

from atlas.site.build import build, generate_pages
from atlas.site.citations import render_citations
from atlas.site.figures import lineage_graph
from atlas.site.plan import SitePlan, navigation, plan

__all__ = ["SitePlan", "build", "generate_pages", "lineage_graph", "navigation", "plan", "render_citations"]
