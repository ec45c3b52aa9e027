"""The numbers rule (a number of the Method must be one of the note's listed numbers, with the
asides it defines) and the aliases rule, on the fixture knowledge base and on the rule itself."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from atlas.cli import app
from atlas.provenance import method_numbers

NOTE = "papers/oord2017neural.md"
METHOD = "Gradients pass the non-differentiable lookup by copying the decoder's gradient to the encoder.\n"
NUMBERS = (
    "numbers:\n"
    '  - {what: codebook size, value: 512, source: "Sec. 4.1"}\n'
    '  - {what: latent grid, value: "32x32", source: "Sec. 4.1"}\n'
)


def run_check(root: Path) -> list[str]:
    result = CliRunner().invoke(app, ["check", "--root", str(root)])
    return [ln for ln in result.output.splitlines() if not ln.startswith("atlas check:")]


def edit(root: Path, old: str, new: str) -> None:
    path = root / NOTE
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(root: Path, fragment: str) -> int:
    return next(i for i, ln in enumerate((root / NOTE).read_text().splitlines(), 1) if fragment in ln)


def test_rule_keeps_quantities_and_sets_aside_years_counts_references_names_math_and_citations():
    text = (
        "A codebook of 8192 entries (16,384 in the larger model) on a 32x32 grid, trained for 1.4B steps, "
        "with 50% masking.\n"
        "In 2021 the two stages [@razavi2019generating] use 3 levels as in Eq. 12 and Table 14; GPT-2 and "
        "VQ-VAE-2 are names, v1.5 too, and so are the 2nd stage and 3D data. Math $K = 4096$ and `code 999` "
        "and a [link](https://arxiv.org/abs/2112.10752) are aside.\n"
    )
    assert method_numbers(text) == [("8192", 1), ("16,384", 1), ("32", 1), ("32", 1), ("1.4", 1), ("50", 1)]


def test_a_note_without_a_numbers_list_is_not_held_to_the_rule(good_kb: Path):
    edit(good_kb, METHOD, METHOD + "The codebook holds 512 vectors of 64 dimensions.\n")
    assert run_check(good_kb) == []


def test_a_number_of_the_method_outside_the_listed_numbers_is_reported_with_its_line(good_kb: Path):
    edit(good_kb, "tests: [tests/check_vq.py]\n", "tests: [tests/check_vq.py]\n" + NUMBERS)
    edit(good_kb, METHOD, METHOD + "The codebook holds 512 vectors of 64 dimensions on a 32x32 grid (2017).\n")
    line = line_of(good_kb, "The codebook holds 512")
    assert run_check(good_kb) == [
        f"{NOTE}:{line}: number '64' in the Method section is not among the note's numbers; each number of the "
        "Method listed under numbers: with its source (years, counts under 10, Eq./Sec./Table numbers, names like "
        "GPT-2, math and citations aside)"
    ]


def test_listing_the_number_satisfies_the_rule_and_other_sections_are_free(good_kb: Path):
    numbers = NUMBERS + '  - {what: code dimension, value: 64, source: "App. A.1"}\n'
    edit(good_kb, "tests: [tests/check_vq.py]\n", "tests: [tests/check_vq.py]\n" + numbers)
    edit(good_kb, METHOD, METHOD + "The codebook holds 512 vectors of 64 dimensions.\n")
    edit(good_kb, "## Similarity to our work\n", "## Similarity to our work\nIts 1000 classes are not ours.\n")
    assert run_check(good_kb) == []


def test_an_alias_that_repeats_the_short_name_or_another_alias_is_reported(good_kb: Path):
    edit(good_kb, "short: VQ-VAE\n", "short: VQ-VAE\naliases: [vector quantization, vq-vae, Vector  Quantization]\n")
    line = line_of(good_kb, "aliases:")
    expected = "other names a reader searches the mechanism by, each once, not the short name"
    assert run_check(good_kb) == [
        f"{NOTE}:{line}: alias 'Vector  Quantization' repeats the alias 'vector quantization'; {expected}",
        f"{NOTE}:{line}: alias 'vq-vae' repeats the short name; {expected}",
    ]


def test_an_alias_that_is_not_a_list_of_strings_is_a_schema_error(good_kb: Path):
    edit(good_kb, "short: VQ-VAE\n", "short: VQ-VAE\naliases: vector quantization\n")
    (line,) = run_check(good_kb)
    assert "'aliases' has a value of the wrong type" in line and "a list like [a, b]" in line


def test_a_dotted_section_or_version_number_is_set_aside_not_a_crash(good_kb: Path):
    assert method_numbers("As in Sec. 3.2.3 and release 1.2.3.4, with 512 codes.\n") == [("512", 1)]
    edit(good_kb, "tests: [tests/check_vq.py]\n", "tests: [tests/check_vq.py]\n" + NUMBERS)
    edit(good_kb, "## Method\n", "## Method\nAs in Sec. 3.2.3 of release 1.2.3.4, with 512 codes.\n")
    assert run_check(good_kb) == []
