"""mkdocs hooks of the survey site (listed under `hooks:` in mkdocs.yml, beside docs/gen_site.py).

Highlighting and the search index's entries are remembered between builds (atlas.site.remember):
the stand-ins are installed when a build starts, put back when it ends, and their stores pruned to
what the build used when it succeeded. Once Material's search plugin has indexed a page, each
section's entry gets the weight the page's front matter gives its heading (atlas.site.search).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority

from atlas.site.remember import stand_ins
from atlas.site.search import weigh_sections

_active: list = []


def on_pre_build(config, **_kwargs) -> None:
    for stand_in in stand_ins(Path(config.config_file_path).parent):
        stand_in.install()
        _active.append(stand_in)


@event_priority(-100)  # after Material's search plugin has added the page's entries
def on_page_context(context, page, config, **_kwargs):
    search = config.plugins.get("material/search")
    if search is not None and getattr(search, "search_index", None) is not None:
        weigh_sections(search.search_index.entries, page.url, page.meta)
    return context


def on_post_build(config, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=True)


def on_build_error(error, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=False)
