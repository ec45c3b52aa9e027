"""Pitfall: how many tokens stay masked after a MaskGIT step (papers/chang2022maskgit.md).

The paper re-masks n_t = ceil(gamma(t/T) N) tokens. The released sampler
(google-research/maskgit maskgit/libml/parallel_decode.py) computes
floor(N * gamma(t/T)) and then clamps it to [1, unknown - 1], so it keeps at least one token
masked until the last step and its default is 12 iterations. Our maskgit.schedule_counts follows
the paper; the released rule is transcribed here to show where the two differ.
"""

from __future__ import annotations

import math

from reference_impls.maskgit import cosine_schedule, schedule_counts


def released_counts(n: int, steps: int) -> list[int]:
    """Tokens left masked after each step under parallel_decode.py's rule (before the final output)."""
    unknown, out = n, []
    for step in range(steps):
        ratio = (step + 1) / steps
        mask_len = math.floor(n * cosine_schedule(ratio))
        mask_len = max(1, min(unknown - 1, mask_len))
        out.append(mask_len)
        unknown = mask_len
    return out


def test_paper_rounding_is_ceil_and_ends_with_nothing_masked():
    counts = schedule_counts(256, 8)
    assert counts[-1] == 0
    assert counts == [max(0, math.ceil(cosine_schedule(t / 8) * 256 - 1e-9)) for t in range(1, 9)]


def test_released_rounding_is_floor_and_differs_wherever_gamma_n_is_not_an_integer():
    ours, released = schedule_counts(256, 8), released_counts(256, 8)
    differing = [i for i, (a, b) in enumerate(zip(ours, released, strict=True)) if a != b]
    # where gamma(t/8) * 256 is not an integer, ceil = floor + 1
    assert differing, (ours, released)
    for i in differing[:-1]:
        assert ours[i] == released[i] + 1
    # the last step: the paper leaves 0 masked, the released clamp still reports 1 (its output keeps the sampled tokens)
    assert ours[-1] == 0 and released[-1] == 1


def test_both_rules_fix_at_least_one_token_per_step():
    for counts in (schedule_counts(256, 12), released_counts(256, 12)):
        prev = 256
        for c in counts:
            assert c < prev
            prev = c
