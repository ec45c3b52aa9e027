"""Pages of the code: the API reference of reference_impls (mkdocstrings) and a source view of
every module, test file and notebook, all from the Survey's inventory."""

from __future__ import annotations

from atlas.model import Survey
from atlas.site.common import api_page, cell, link, paper_name, paper_page, render, source_page
from atlas.site.search import API_BOOST


def _paper_links(survey: Survey, keys: list[str], page: str) -> list[str]:
    return [f"[{cell(paper_name(survey, k))}]({link(page, paper_page(k))})" for k in keys]


def api_index_markdown(survey: Survey) -> str:
    page = "api/index.md"
    modules = [
        {
            "name": mod.name,
            "href": link(page, api_page(mod.name)),
            "summary": mod.summary,
            "papers": _paper_links(survey, survey.users_of_module(mod.name), page),
        }
        for mod in survey.inventory.modules
    ]
    return render("api_index.md.j2", modules=modules)


def api_markdown(survey: Survey, module: str) -> str:
    page = api_page(module)
    tests = [
        {"path": t.path, "href": link(page, source_page(t.path))}
        for t in survey.inventory.test_files
        if t.path.rsplit("/", 1)[-1] == f"test_{module}.py"
    ]
    return render(
        "api.md.j2",
        module=module,
        boost=API_BOOST,
        source=link(page, source_page(f"reference_impls/{module}.py")),
        tests=tests,
        papers=_paper_links(survey, survey.users_of_module(module), page),
    )


def source_markdown(survey: Survey, path: str) -> str:
    page = source_page(path)
    users = sorted(
        k
        for k, n in survey.notes.items()
        if path in n.meta.tests or n.meta.notebook == path or any(f"reference_impls/{m}.py" == path for m in n.modules)
    )
    api = None
    if path.startswith("reference_impls/"):
        api = link(page, api_page(path.rsplit("/", 1)[-1].removesuffix(".py")))
    return render(
        "source.md.j2", path=path, users=_paper_links(survey, users, page), api=api, code=survey.inventory.sources[path]
    )
