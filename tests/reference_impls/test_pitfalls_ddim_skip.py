"""Pitfall: the number of DDIM steps actually taken (papers/song2021denoising.md).

The authors' sampler (ermongroup/ddim runners/diffusion.py, skip_type 'uniform') builds
seq = range(0, T, T // S). When S does not divide T this has more than S entries: S = 7 with
T = 1000 gives skip 142 and eight timesteps 0, 142, ..., 994. diffusers' 'leading' spacing
(schedulers/scheduling_ddim.py: arange(0, S) * (T // S)) and our ddim.make_timesteps(spacing='leading')
take exactly S, so the same S means a different sampler. The trailing-spacing bug of diffusers'
step() is covered in tests/reference_impls/test_ddim.py.
"""

from __future__ import annotations

from reference_impls.ddim import make_timesteps


def official_uniform(T: int, S: int) -> list[int]:
    """ermongroup/ddim's uniform skip, as a decreasing list."""
    return sorted(range(0, T, T // S), reverse=True)


def test_official_uniform_skip_takes_an_extra_step_when_s_does_not_divide_t():
    assert len(official_uniform(1000, 7)) == 8
    assert official_uniform(1000, 7)[0] == 994


def test_leading_spacing_takes_exactly_s_steps_and_is_a_prefix_of_the_official_grid():
    ours = make_timesteps(1000, 7, spacing="leading")
    assert len(ours) == 7 and ours[0] == 852
    assert set(ours) < set(official_uniform(1000, 7))


def test_the_two_agree_when_s_divides_t():
    for S in (10, 50, 100, 250):
        assert make_timesteps(1000, S, spacing="leading") == official_uniform(1000, S)
