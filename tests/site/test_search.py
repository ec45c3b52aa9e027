"""The site's search lands on the paper a reader means (atlas/site/search.py, mkdocs.yml's search
fields): a mechanism's name in the paper's own words, a short name, an alias or a phrase of a
paper's Method puts that paper's page among the first three results, in a real browser typing into
Material's search box; the index holds the weights that make it so, and leaves out the lists that
repeat a paper's text on other pages."""

from __future__ import annotations

import json
import time

import pytest
from browser import ARGS, CHROMIUM, need_chromium, open_search, result_pages  # tests/site/browser.py

from atlas.site.search import API_BOOST, OTHER_SECTIONS, PAPER_BOOST, SECTION_BOOST, weigh_sections

# Readers' queries, each with the paper whose page should be among the first three results.
QUERIES = [
    # a mechanism's name as the paper (or its alias line) gives it
    ("straight-through estimator", "oord2017neural"),
    ("commitment loss", "oord2017neural"),
    ("residual quantization", "lee2022autoregressive"),
    ("next-scale prediction", "tian2024visual"),
    ("classifier-free guidance", "ho2022classifier"),
    ("absorbing state", "austin2021structured"),
    ("lookup-free quantization", "yu2024language"),
    ("rotation trick", "fifty2025restructuring"),
    ("finite scalar quantization", "mentzer2024finite"),
    ("binary spherical quantization", "zhao2025image"),
    ("delay pattern", "copet2023simple"),
    ("Gumbel-softmax", "jang2017categorical"),
    ("adaLN-Zero", "peebles2023scalable"),
    ("bitwise self-correction", "han2025infinity"),
    ("early fusion", "chameleonteam2024chameleon"),
    ("neural codec language model", "wang2023neural"),
    ("Sandwich-LN", "ding2021cogview"),
    ("2D RoPE", "sun2024autoregressive"),
    ("taming transformers", "esser2021taming"),
    # words of a paper's title, Summary or Method, no alias of it
    ("masked generative transformer", "chang2022maskgit"),
    ("masked generative video transformer", "yu2023magvit"),
    ("random restarts", "dhariwal2020jukebox"),
    ("dynamic thresholding", "saharia2022photorealistic"),
    ("unidirectional bias", "gu2022vector"),
    ("diffusion autoencoders", "preechakul2022diffusion"),
    ("LoPAR", "ding2022cogview2"),
    ("PartiPrompts", "yu2022scaling"),
    ("multinomial diffusion", "hoogeboom2021argmax"),
    ("temporal layers", "blattmann2023align"),
    ("score-based prior in latent space", "vahdat2021score"),
    ("scene layout", "gafni2022make"),
    # the papers of the 2024 reading list
    ("codebook utilization", "zhu2024scaling"),
    ("dead codes restart", "lancucki2020robust"),
    ("online clustered codebook", "zheng2023online"),
    ("stochastic quantization", "takida2022sq"),
    ("affine reparameterization", "huh2023straightening"),
    ("index backpropagation", "shi2025scalable"),
    ("score entropy", "lou2024discrete"),
    ("probability flow ODE", "song2021score"),
    ("nonequilibrium thermodynamics", "sohldickstein2015deep"),
    ("SimVQ", "zhu2025addressing"),
    ("MDLM", "sahoo2024simple"),
    ("RADD", "ou2025absorbing"),
    ("Emu3", "wang2024emu3"),
    # a short name
    ("MaskGIT", "chang2022maskgit"),
    ("LlamaGen", "sun2024autoregressive"),
    ("TiTok", "yu2024image"),
    ("DDPM", "ho2020denoising"),
    # the syntax the home page describes: an exact phrase, a prefix
    ('"straight-through estimator"', "oord2017neural"),
    ("quantiz* residual", "lee2022autoregressive"),
]


@pytest.mark.slow
def test_a_readers_query_puts_the_paper_it_means_in_the_first_three_results(served_site: str):
    need_chromium()
    from playwright.sync_api import sync_playwright

    start = time.perf_counter()
    landed, misses = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_search(page, served_site)
            for query, key in QUERIES:
                pages = result_pages(page, query)
                target = f"/papers/{key}/"
                rank = pages.index(target) + 1 if target in pages else None
                landed.append(f"{rank or '-':>3}  {query!r} -> papers/{key}")
                if rank is None or rank > 3:
                    misses.append(f"{query!r}: papers/{key} at {rank or 'no'} rank, first five: {pages[:5]}")
        finally:
            browser.close()
    print(f"{len(QUERIES)} queries in {time.perf_counter() - start:.1f} s; rank of the intended page:")
    print("\n".join(landed))
    assert len(QUERIES) >= 20
    assert not misses, "\n".join(misses)


def _index(built_site) -> dict:
    return json.loads((built_site[0] / "search" / "search_index.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_index_weighs_a_papers_summary_and_method_above_its_other_sections_and_the_api(built_site):
    index = _index(built_site)
    fields = index["config"]["fields"]
    assert fields["tags"]["boost"] <= fields["title"]["boost"]  # not Material's 1e6: one tag word no longer rules
    boosts = {d["location"]: d.get("boost", 1) for d in index["docs"]}
    key = "oord2017neural"
    assert boosts[f"papers/{key}/"] == PAPER_BOOST
    assert boosts[f"papers/{key}/#summary"] == PAPER_BOOST * SECTION_BOOST["summary"]
    assert boosts[f"papers/{key}/#method"] == PAPER_BOOST * SECTION_BOOST["method"]
    assert boosts[f"papers/{key}/#implementation"] == PAPER_BOOST * OTHER_SECTIONS
    assert boosts["api/vq/"] == API_BOOST
    tags = next(d["tags"] for d in index["docs"] if d["location"] == f"papers/{key}/")
    assert tags[0] == "VQ-VAE" and "straight-through estimator" in tags


@pytest.mark.slow
def test_lists_that_repeat_a_papers_text_are_left_out_of_the_index(built_site):
    docs = _index(built_site)["docs"]
    locations = {d["location"] for d in docs}
    key = "oord2017neural"
    assert f"papers/{key}/#summary" in locations
    for left_out in ("#lineage", "#builds-on", "#built-upon-by", "#bibtex"):
        assert f"papers/{key}/{left_out}" not in locations
    # group, modality, index and Pitfalls pages: found by their title and introduction, not by each paper's text
    for page in ("groups/discrete-tokenizers/", "modalities/image/", "pitfalls/", "papers/", "groups/", "api/"):
        assert page in locations
        assert not [loc for loc in locations if loc.startswith(page + "#")], page
    for page in ("table/", ""):  # the comparison table's rows, the home page's list of core papers
        text = next(d["text"] for d in docs if d["location"] == page)
        assert "VQ-VAE-2" not in text, page


def test_weigh_sections_multiplies_each_section_of_the_page_by_its_headings_weight():
    entries = [
        {"location": "papers/a/#summary", "boost": 4},  # an earlier page's entry: left alone
        {"location": "papers/b/", "boost": 4},
        {"location": "papers/b/#summary", "boost": 4},
        {"location": "papers/b/#method", "boost": 4},
        {"location": "papers/b/#pitfalls", "boost": 4},
    ]
    meta = {"search": {"boost": 4, "section_boost": {"summary": 4, "method": 2, "*": 0.25}}}
    weigh_sections(entries, "papers/b/", meta)
    assert [e["boost"] for e in entries] == [4, 4, 16, 8, 1]


def test_weigh_sections_leaves_a_page_without_section_weights_as_material_indexed_it():
    entries = [{"location": "api/vq/", "boost": 0.5}, {"location": "api/vq/#reference_impls.vq.lookup", "boost": 0.5}]
    weigh_sections(entries, "api/vq/", {"search": {"boost": 0.5}})
    weigh_sections(entries, "api/vq/", {})
    assert [e["boost"] for e in entries] == [0.5, 0.5]


@pytest.mark.slow
def test_the_home_page_says_how_to_search(built_site):
    html = (built_site[0] / "index.html").read_text(encoding="utf-8")
    section = html.split('id="searching"', 1)[1].split("<h2", 1)[0]
    for hint in ('"straight-through estimator"', "token*", "+codebook", "-music", "~1", "title:"):
        assert hint in section, hint
