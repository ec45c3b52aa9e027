"""mkdocs hooks of the survey site (listed under `hooks:` in mkdocs.yml, beside docs/gen_site.py).

Pygments' output is remembered between builds (atlas.site.highlight): installed when a build starts,
put back when it ends, and pruned to what the build used when it succeeded.
"""

from __future__ import annotations

from pathlib import Path

from atlas.site.highlight import CACHE, RememberedHighlighting

_active: list[RememberedHighlighting] = []


def on_pre_build(config, **_kwargs) -> None:
    remembered = RememberedHighlighting(Path(config.config_file_path).parent / CACHE)
    remembered.install()
    _active.append(remembered)


def on_post_build(config, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=True)


def on_build_error(error, **_kwargs) -> None:
    while _active:
        _active.pop().uninstall(prune=False)
