"""A small knowledge base with related-work texts, built on the good fixture, for the export's tests."""

from __future__ import annotations

from pathlib import Path

import yaml

TEXTS = {
    "intro": """{short} Our work learns a codebook and fits an autoregressive prior over its token indices,
the recipe of @oord2017neural.
{column} The paragraphs below follow the tokenizer that produces the indices.
""",
    "discrete-tokenizers": """{short} Discrete tokenizers map a signal to indices into a learned codebook
[@oord2017neural; @razavi2019generating].
{column} Hierarchies of code maps extend the idea to larger inputs [@razavi2019generating].
{full} A longer form adds a sentence only the full length keeps.
""",
    "conclusion": """# Summary

{short} Codebooks with autoregressive priors remain a simple design [@oord2017neural].
{column} Sampling one token per step is slow for long grids.
""",
}


def with_related(root: Path, texts: dict[str, str] | None = None, **export) -> Path:
    """Write related/*.md into `root` and set small word ranges (and any export settings) in its atlas.yml."""
    (root / "related").mkdir(exist_ok=True)
    for name, text in (texts or TEXTS).items():
        (root / "related" / f"{name}.md").write_text(text)
    config = yaml.safe_load((root / "atlas.yml").read_text())
    config["export"] = {
        "lengths": {"short": [5, 60], "column": [10, 90], "full": [10, 120]},
        "table_papers": [],
        **export,
    }
    (root / "atlas.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root
