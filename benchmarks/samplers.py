"""DDPM ancestral sampling (1,000 steps) against DDIM (10, 50, 100 steps) with an exact eps oracle.

Papers: DDPM (papers/ho2020denoising.md) and DDIM (papers/song2021denoising.md), which reports
10x to 50x faster sampling in wall-clock time. With the oracle for a single known x_0 every correct
sampler returns x_0, so the error column checks correctness and the time column measures the cost of
the sampler loop itself; with a real network each step costs one network evaluation, so the speed-up
is close to the ratio of step counts.

Run: .venv/bin/python benchmarks/samplers.py
"""

from __future__ import annotations

import time

import torch

from reference_impls.ddim import ddim_sample, exact_eps_oracle, make_timesteps
from reference_impls.ddpm import Schedule, linear_betas, p_sample_loop


def _timed(fn, repeats: int = 3) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    torch.set_num_threads(1)
    sched = Schedule(linear_betas(1000))
    g = torch.Generator().manual_seed(0)
    shape = (16, 3, 32, 32)
    x0 = torch.rand(shape, generator=g) * 2 - 1  # (B, C, H, W) "images" in [-1, 1]
    oracle = exact_eps_oracle(sched, x0)
    x_T = torch.randn(shape, generator=g)

    rows = []
    t_ddpm, out = _timed(lambda: p_sample_loop(sched, oracle, shape, torch.Generator().manual_seed(1)))
    rows.append(("DDPM", 1000, t_ddpm, (out - x0).abs().max().item()))
    for n in (10, 50, 100):
        ts = make_timesteps(1000, n, "trailing")
        t, out = _timed(lambda ts=ts: ddim_sample(sched, oracle, x_T, ts, eta=0.0))
        rows.append(("DDIM eta=0", n, t, (out - x0).abs().max().item()))

    print(f"batch {tuple(shape)}, exact eps oracle, linear betas 1e-4..0.02, T = 1000, best of 3 runs")
    print(f"{'sampler':<12}{'steps':>7}{'time [ms]':>12}{'max |x - x0|':>15}{'speed-up':>11}")
    for name, steps, t, err in rows:
        print(f"{name:<12}{steps:>7}{1000 * t:>12.1f}{err:>15.2e}{t_ddpm / t:>10.1f}x")


if __name__ == "__main__":
    main()
