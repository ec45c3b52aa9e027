"""The our-work rule: a note may not call our prior conditional or unconditional (atlas.yml leaves it open)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from atlas.claims import claims, sentences
from atlas.cli import app

NOTE = "papers/oord2017neural.md"


@pytest.mark.parametrize(
    "sentence",
    [
        "Jukebox conditions on lyrics, which has no counterpart in our unconditional setting.",
        "Training with condition dropout is a one-line change to a conditional token prior like ours.",
        "Its guidance is a drop-in improvement for any class-conditional prior, ours included.",
        "Our prior is text-conditioned through a prefix.",
        "It is the standard yardstick for text-to-token generators like ours.",
        "Unlike the paper, we model image tokens conditioned on the class label.",
        "We sample unconditionally.",
    ],
)
def test_a_sentence_about_our_work_that_fixes_its_conditioning_is_reported(sentence: str):
    assert [line for line, _ in claims(sentence)] == [1]


@pytest.mark.parametrize(
    "sentence",
    [
        # about the paper only
        "Parti is a text-conditional autoregressive prior.",
        "The paper reports unconditional and class-conditional results.",
        # about our work, but not about its conditioning
        "Each of our tokens is conditioned on the tokens before it.",
        "Our prior factorises the grid into easy conditionals.",
        # hedged: says what would follow, claims neither
        "If our prior is conditioned, condition dropout is a one-line change to it.",
        "Whether our prior is conditional or unconditional is not fixed by the profile.",
        "Its guidance would help our prior if it were conditioned.",
    ],
)
def test_sentences_that_leave_our_conditioning_open_pass(sentence: str):
    assert claims(sentence) == []


@pytest.mark.parametrize(
    "sentence",
    [
        "The paper's priors are PixelCNN and WaveNet; ours is a transformer-style autoregressive model.",
        "Its receptive field stays local, whereas our transformer prior attends to every earlier token.",
        "A separate prior plays the role our autoregressive transformer plays over VQ indices.",
        "Our convolutional encoder downsamples by eight.",
        "Unlike our PixelCNN prior, it attends globally.",
    ],
)
def test_a_sentence_that_names_our_priors_network_is_reported(sentence: str):
    ((line, message),) = claims(sentence)
    assert line == 1 and "not its network" in message


@pytest.mark.parametrize(
    "sentence",
    [
        "Its receptive field stays local, whereas a transformer token prior attends to every earlier token.",
        "A transformer decoder is the usual way to build an autoregressive prior over indices such as ours.",
        "Our prior is autoregressive over the tokens, like the transformer priors of VQGAN.",
        "If our prior were a transformer, the key-value cache would apply to it.",
    ],
)
def test_sentences_that_leave_our_priors_network_open_pass(sentence: str):
    assert claims(sentence) == []


def test_a_sentence_spanning_lines_is_reported_at_its_first_line():
    prose = "Intro line.\n\nThe tokens are shared, and the paper\nuses them exactly as our\nunconditional prior does."
    assert [line for line, _ in claims(prose)] == [3]


def test_our_and_conditional_in_neighbouring_sentences_are_not_joined():
    prose = "Our codebook is a VQ-VAE codebook. The paper's prior is class-conditional."
    assert claims(prose) == []


def test_abbreviations_and_decimals_do_not_end_a_sentence():
    prose = "The grid, e.g. 16 by 16 at rate 0.5, is ours. Next one."
    assert [s for _, s in sentences(prose)] == ["The grid, e.g. 16 by 16 at rate 0.5, is ours.", "Next one."]


def test_a_heading_or_blank_line_ends_a_sentence_without_a_full_stop():
    prose = "Our work\n\nThe paper is class-conditional."
    assert claims(prose) == []


def test_check_reports_the_claim_at_its_file_line(good_kb: Path):
    path = good_kb / NOTE
    text = path.read_text(encoding="utf-8")
    old = "The latent space is the same kind as ours:"
    assert old in text
    path.write_text(text.replace(old, "Our prior is unconditional. " + old, 1), encoding="utf-8")
    line = text[: text.index(old)].count("\n") + 1
    result = CliRunner().invoke(app, ["check", "--root", str(good_kb)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        (
            f"{NOTE}:{line}: a sentence about our work says 'unconditional', but whether and on what our prior "
            "is conditioned is not known; only what atlas.yml's our_work profile states, "
            "or a hedged 'if'/'whether' sentence"
        ),
        "atlas check: 1 problem",
    ]


def test_a_heading_directly_above_a_sentence_does_not_move_its_line():
    prose = "## Similarity to our work\nOur prior is unconditional."
    assert [line for line, _ in claims(prose)] == [2]


# The kinds of sentence issue 26 found in ten notes, and the example of the export issue.
BEYOND_THE_PROFILE = [
    ("The interface is the same as ours: a transformer is then fitted to the index sequences.", "transformer"),
    ("The tokens are integers, and a transformer prior is fitted to them: the same pattern as ours.", "transformer"),
    ("This is the closest instance of our design: a causal transformer on the raster-ordered indices.", "causal"),
    ("Its causal raster variant is our prior with the softmax replaced by a diffusion head.", "causal"),
    ("Unlike RAR, our prior is trained on one fixed order.", "trained on one"),
    ("The image half of Chameleon is our model: a VQ codebook over an image grid.", "image"),
    ("The first stage is our prior in another modality: a decoder-only transformer with a prefix.", "decoder-only"),
    ("The prior is the one our work uses: a decoder-only transformer sampled one step at a time.", "decoder-only"),
    ("DiT shares the two-stage structure: a class-conditional transformer models the grid.", "transformer"),
    ("The system is our setting at scale: a VQ codebook modelled by an autoregressive transformer.", "transformer"),
    (
        "Our codebook is trained without an adversarial loss, and our prior is a small decoder-only transformer "
        "sampled one token per forward pass.",
        "adversarial",
    ),
    ("Our prior has 300M parameters.", "300M"),
    ("Our prior is sampled with top-k filtering.", "top-k"),
]


@pytest.mark.parametrize(("sentence", "word"), BEYOND_THE_PROFILE)
def test_a_sentence_that_says_more_of_our_work_than_the_profile_is_reported(sentence: str, word: str):
    prose = "## Similarity to our work\n\n" + sentence if sentence.startswith("DiT") else sentence
    found = claims(prose)
    assert len(found) == 1 and f"'{word}'" in found[0][1], found


@pytest.mark.parametrize(
    "sentence",
    [
        "Unlike our work, LlamaGen uses a transformer with rotary position embeddings.",
        "The image half has the two parts of our work: a VQ codebook and an autoregressive prior over its "
        "indices, here a causal transformer over an image grid.",
        "MaskGIT lives in our latent space, a learned VQ codebook; its indices are modelled by a transformer.",
        "It shows a property our autoregressive prior lacks: every token stays revisable during sampling.",
        "Our prior is autoregressive over the token indices of a VQ-VAE codebook.",
    ],
)
def test_sentences_that_keep_to_the_profile_pass(sentence: str):
    assert claims(sentence) == []


def test_a_profile_that_states_more_lets_the_texts_say_it():
    sentence = "Our prior is a decoder-only transformer sampled with top-k filtering."
    assert claims(sentence)
    profile = SimpleNamespace(
        summary="a VQ-VAE codebook with an autoregressive prior",
        contribution=None,
        network="a decoder-only transformer",
        training=None,
        sampling="top-k filtering",
        size=None,
        order=None,
        modality=[],
        conditioning=[],
    )
    assert claims(sentence, profile) == []
    assert claims("Our prior is a PixelCNN.", profile), "a network the profile does not name is still reported"
