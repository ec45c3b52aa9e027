"""mkdocs hooks of the survey site (listed under `hooks:` in mkdocs.yml, beside docs/gen_site.py).

Highlighting and the search index's entries are remembered between builds (atlas.site.remember):
the stand-ins are installed when a build starts, put back when it ends, and their stores pruned to
what the build used when it succeeded.
"""

from __future__ import annotations

from pathlib import Path

from atlas.site.remember import stand_ins

_active: list = []


def on_pre_build(config, **_kwargs) -> None:
    for stand_in in stand_ins(Path(config.config_file_path).parent):
        stand_in.install()
        _active.append(stand_in)


def on_post_build(config, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=True)


def on_build_error(error, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=False)
