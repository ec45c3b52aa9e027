"""Parity with MusicGen's codebook patterns (facebookresearch/audiocraft 1.3.0,
audiocraft/modules/codebooks_patterns.py).

Module compared: reference_impls.musicgen's patterns (delay, parallel, flattened, coarse-first),
build_sequence, revert_sequence and valid_mask against audiocraft's pattern providers and
Pattern.build_pattern_sequence / revert_pattern_sequence.

audiocraft pins another torch and its `__init__` imports the whole library (audio I/O, models);
it is installed without dependencies (tests/parity/install.sh) and codebooks_patterns.py, which
imports only torch, is loaded with the `audiocraft` and `audiocraft.modules` `__init__` skipped.

One convention differs: every audiocraft layout starts with an empty step (the slot of the
special start token), so its sequence is one step longer and step s + 1 there is step s here; our
InterleavedLM prepends its start token inside forward instead. The comparisons drop that step.
Everything is integer: compared exactly.
"""

from __future__ import annotations

import pytest
import torch

from reference_impls.musicgen import (
    build_sequence,
    coarse_first_pattern,
    delay_pattern,
    flattened_pattern,
    parallel_pattern,
    revert_sequence,
    valid_mask,
)

K, T, SPECIAL = 4, 12, 2048  # codebooks, frames, the special token (MusicGen: card 2048)


@pytest.fixture(scope="module")
def cp(import_peer):
    return import_peer(
        "audiocraft.modules.codebooks_patterns",
        bare=("audiocraft", "audiocraft.modules"),
        reason="audiocraft is not installed (bash tests/parity/install.sh)",
    )


def cases(cp):
    return {
        "delay": (delay_pattern(T, [0, 1, 2, 3]), cp.DelayedPatternProvider(K, delays=[0, 1, 2, 3])),
        "delay_uneven": (delay_pattern(T, [0, 2, 2, 5]), cp.DelayedPatternProvider(K, delays=[0, 2, 2, 5])),
        "parallel": (parallel_pattern(T, K), cp.ParallelPatternProvider(K)),
        "flattened": (flattened_pattern(T, K), cp.UnrolledPatternProvider(K)),  # flattening = range(K), no delays
        "coarse_first": (coarse_first_pattern(T, K), cp.CoarseFirstPattern(K, delays=[0, 0, 0])),
    }


NAMES = ["delay", "delay_uneven", "parallel", "flattened", "coarse_first"]


@pytest.mark.parametrize("name", NAMES)
def test_layout_is_audiocraft_layout_without_its_initial_empty_step(cp, name):
    ours, provider = cases(cp)[name]
    layout = provider.get_pattern(T).layout
    assert layout[0] == []  # the start-token step
    # audiocraft also lists (t, q) with t >= T in the tail steps of a delay; they hold no code
    theirs = [tuple(sorted((c.t, c.q) for c in step if c.t < T)) for step in layout[1:]]
    while theirs and not theirs[-1]:
        theirs.pop()  # trailing steps of only out-of-range coordinates
    assert [tuple(sorted(step)) for step in ours.steps] == theirs


@pytest.mark.parametrize("name", NAMES)
def test_built_sequence_mask_and_revert_equal_audiocraft(cp, name):
    ours, provider = cases(cp)[name]
    pattern = provider.get_pattern(T)
    codes = torch.randint(0, SPECIAL, (2, K, T), generator=torch.Generator().manual_seed(1))
    values, _, mask = pattern.build_pattern_sequence(codes, SPECIAL)  # (B, K, 1 + S'), (K, 1 + S')
    seq = build_sequence(codes, ours, SPECIAL)  # (B, K, S)
    steps = seq.shape[-1]
    assert torch.equal(values[..., 0], torch.full((2, K), SPECIAL))  # the start step
    assert torch.equal(values[..., 1 : 1 + steps], seq)
    assert torch.equal(values[..., 1 + steps :], torch.full_like(values[..., 1 + steps :], SPECIAL))
    assert torch.equal(mask[:, 1 : 1 + steps], valid_mask(ours))
    reverted, _, rmask = pattern.revert_pattern_sequence(values, SPECIAL)
    assert bool(rmask.all())
    assert torch.equal(reverted, codes) and torch.equal(revert_sequence(seq, ours), codes)


def test_musicgen_delay_layout_has_one_start_step_more_than_ours(cp):
    ours, provider = cases(cp)["delay"]
    pattern = provider.get_pattern(T)
    codes = torch.zeros(1, K, T, dtype=torch.long)
    assert len(pattern.layout) == pattern.build_pattern_sequence(codes, SPECIAL)[0].shape[-1] == T + K
    assert pattern.num_sequence_steps == ours.num_steps == T + K - 1  # T + max delay code-bearing steps
