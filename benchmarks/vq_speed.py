"""Speed and peak memory of reference_impls.vq.VectorQuantizer on the CPU.

Compared, at equal settings, with vector_quantize_pytorch.VectorQuantize and with a bare matrix
product of the distance shape, (65536, 256) @ (256, K):

    dim 256, K in {1024, 8192}, 65,536 vectors given as one (64, 256, 32, 32) feature map,
    commitment weight 0.25, plain nearest-neighbour straight-through (no rotation trick, no k-means
    init, no stochastic sampling), in two codebook modes:
        grad  ours VectorQuantizer(ema=False)   vs VectorQuantize(learnable_codebook=True, ema_update=False)
              and VectorQuantizer(fused=True), the same values and gradients in one autograd node
        ema   ours VectorQuantizer(ema=True)    vs VectorQuantize(decay=0.99)  (EMA, its default);
              only with --ema (it doubles the run time)

One step = the quantiser's forward and backward: from z_e to (z_q, loss), then back from the
gradient at z_q (a fixed random tensor, standing for what the decoder hands back) and from the
quantiser's own loss, to the gradients of z_e and of the codebook. The matmul case is a forward
product only: the floor any exact nearest-neighbour search pays.

The step used to be timed with a stand-in decoder loss, mean(z_q^2), inside it (the issue's 2.76x
was measured that way). That loss's own forward and backward (square, mean, and PyTorch's pow
backward) write five fresh (65536, 256) tensors that are not the quantiser's work; at K = 1024 they
added 0.02 to 0.10 s to the fused step in our runs, where the matmul takes about 0.24 s. The fused
path is still timed that way too ("fused-grad+loss"), printed for comparison with the earlier
figures; the goal is judged on the quantiser's step.

Each case runs in its own subprocess, so every figure comes from a fresh process:
    time      K = 1024: best of 5 timed steps after one untimed warm-up step; the anchor and the
              fused path are measured in ROUNDS rounds of fresh processes, one after the other, and
              the fused path's ratio to the anchor is the median of the rounds' ratios (one pair of
              fresh processes varies from run to run, mostly in the cost of first-touching the
              pages of fresh tensors, which the anchor's (65536, K) output pays too).
              K = 8192: one cold step per case (each takes seconds).
              Wall clock, torch's default thread count; throughput = 65,536 / time.
    peak MB   growth of the process's peak resident set size (getrusage ru_maxrss) from just before
              the first step to the end: the extra memory the step needed at its high-water mark,
              beyond the inputs and the module. It counts all allocations of the process (torch's
              CPU allocator returns freed blocks to the OS, so a later smaller step cannot hide an
              earlier peak); it is a resident-set figure, not a tensor-by-tensor count.

Run:  .venv/bin/python benchmarks/vq_speed.py            (about two minutes on 2 idle cores)
      .venv/bin/python benchmarks/vq_speed.py --ema      (adds the EMA codebooks)
      .venv/bin/python benchmarks/vq_speed.py --profile  (operator table for ours, K = 8192)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

N, DIM, KS = 65536, 256, (1024, 8192)
GRID = (64, DIM, 32, 32)  # 64 * 32 * 32 = 65,536 vectors
ROUNDS = 3  # rounds of fresh processes for the anchor and the fused path at K = 1024


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB -> MiB


def _build(case: str, k: int):
    """Return a zero-argument step function for one case."""
    import torch

    torch.manual_seed(0)
    if case == "matmul":
        a, b = torch.randn(N, DIM), torch.randn(DIM, k)
        return lambda: a @ b

    z = torch.randn(*GRID, requires_grad=True)  # (B, D, H, W)
    g = torch.randn(*GRID)  # the gradient at z_q, as the decoder would hand it back
    impl, mode = case.split("-")
    mode, stand_in_loss = mode.removesuffix("+loss"), mode.endswith("+loss")
    if impl in ("ours", "fused"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from reference_impls.vq import VectorQuantizer

        vq = VectorQuantizer(k, DIM, beta=0.25, ema=mode == "ema", decay=0.99, fused=impl == "fused").train()

        def step():
            out = vq(z)
            if stand_in_loss:
                (out.z_q.square().mean() + out.loss).backward()
            else:
                torch.autograd.backward((out.z_q, out.loss), (g, None))  # None: d loss / d loss = 1
    else:
        from vector_quantize_pytorch import VectorQuantize

        kwargs = dict(learnable_codebook=True, ema_update=False) if mode == "grad" else dict(decay=0.99)
        vq = VectorQuantize(
            dim=DIM,
            codebook_size=k,
            commitment_weight=0.25,
            rotation_trick=False,
            kmeans_init=False,
            accept_image_fmap=True,
            **kwargs,
        ).train()

        def step():
            quantized, _, commit = vq(z)
            torch.autograd.backward((quantized, commit.sum()), (g, None))

    return step


def run_case(case: str, k: int, repeats: int, warmup: int) -> dict:
    step = _build(case, k)
    base = _maxrss_mb()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"case": case, "k": k, "time": min(times), "peak_mb": _maxrss_mb() - base}


def profile_ours(k: int = 8192) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    step = _build("ours-grad", k)
    step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    del torch


def main(with_ema: bool = False) -> None:
    import importlib.util

    if importlib.util.find_spec("vector_quantize_pytorch") is None:
        sys.exit(
            "benchmarks/vq_speed.py: the anchor vector-quantize-pytorch is not installed; "
            "expected `.venv/bin/pip install -e '.[bench]'` first"
        )
    modes = ("grad", "ema") if with_ema else ("grad",)
    paired = ["matmul", "fused-grad", "fused-grad+loss"]  # K = 1024: measured in ROUNDS rounds
    others = [f"{impl}-{mode}" for mode in modes for impl in ("ours", "vqp")]
    t_start = time.perf_counter()
    rounds: dict[str, list[dict]] = {case: [] for case in paired}
    for _ in range(ROUNDS):
        for case in paired:
            rounds[case].append(_run(case, 1024, warmup=1, repeats=5))
    anchor = rounds["matmul"]
    ratios = sorted(f["time"] / a["time"] for f, a in zip(rounds["fused-grad"], anchor, strict=True))
    ratios_loss = sorted(f["time"] / a["time"] for f, a in zip(rounds["fused-grad+loss"], anchor, strict=True))
    results: dict[tuple[str, int], dict] = {}
    for case, runs in rounds.items():  # the table shows each case's median round
        results[(case, 1024)] = sorted(runs, key=lambda r: r["time"])[len(runs) // 2]
    for case in others:
        results[(case, 1024)] = _run(case, 1024, warmup=1, repeats=5)
    for case in ["matmul", "fused-grad", *others]:  # K = 8192 steps take seconds: one cold step each
        results[(case, 8192)] = _run(case, 8192, warmup=0, repeats=1)

    import torch

    print(
        f"VectorQuantizer speed, CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{N} vectors of dim {DIM} as a {GRID} map"
    )
    print(f"{'case':<16}{'K':>6}{'step s':>9}{'Mvec/s':>9}{'peak MB':>9}")
    for (case, k), r in results.items():
        print(f"{case:<16}{k:>6}{r['time']:>9.3f}{N / r['time'] / 1e6:>9.2f}{r['peak_mb']:>9.0f}")
    print()
    goals = []
    for k in KS:
        mm = results[("matmul", k)]["time"]
        for mode in modes:
            ours, vqp = results[(f"ours-{mode}", k)], results[(f"vqp-{mode}", k)]
            thr_ratio = vqp["time"] / ours["time"]  # ours throughput / theirs
            mm_ratio = ours["time"] / mm
            mem_ratio = ours["peak_mb"] / max(vqp["peak_mb"], 1e-9)
            g1, g2 = thr_ratio >= 1.0, mm_ratio <= 1.5
            # the time goal of the gradient codebook is the fused path's (below); the readable path is the reference
            goals += [g1] if mode == "grad" else [g1, g2]
            verdict = (
                "the readable reference; the goal is the fused path's"
                if mode == "grad"
                else (f"goal <= 1.5x: {'met' if g2 else 'MISSED'}")
            )
            print(
                f"K={k:<5} {mode:<4}  throughput ours/vector-quantize-pytorch = {thr_ratio:5.2f}x "
                f"(goal >= 1.0x: {'met' if g1 else 'MISSED'});  time ours/matmul = {mm_ratio:5.2f}x "
                f"({verdict});  peak memory ours/theirs = {mem_ratio:4.2f}x"
            )
    # the fused plain path (VectorQuantizer(fused=True)), same values and gradients as ours-grad
    for k in KS:
        fused = results[("fused-grad", k)]["time"]
        ratio = median(ratios) if k == 1024 else fused / results[("matmul", k)]["time"]
        goals.append(ratio <= 1.5)
        spread = f" (median of {ROUNDS} rounds: {', '.join(f'{r:.2f}' for r in ratios)})" if k == 1024 else ""
        print(
            f"K={k:<5} grad  fused: time ours(fused)/matmul = {ratio:5.2f}x{spread} (goal <= 1.5x: "
            f"{'met' if ratio <= 1.5 else 'MISSED'});  throughput fused/vector-quantize-pytorch = "
            f"{results[('vqp-grad', k)]['time'] / fused:5.2f}x"
        )
    print(
        f"K=1024  grad  fused, timed with the stand-in loss mean(z_q^2) inside the step (the earlier "
        f"definition): {median(ratios_loss):5.2f}x the matmul "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios_loss)}); not the goal's measure"
    )
    print(f"\nall goals met: {all(goals)}   (whole run {time.perf_counter() - t_start:.0f} s)")


def _run(case: str, k: int, *, warmup: int, repeats: int) -> dict:
    """One case in a fresh process: its run_case() result."""
    cmd = [sys.executable, __file__, "--case", case, "--k", str(k), "--repeats", str(repeats), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case")
    parser.add_argument("--k", type=int)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ema", action="store_true", help="also compare the EMA codebooks")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profile_ours()
    elif args.case:
        print(json.dumps(run_case(args.case, args.k, args.repeats, args.warmup)))
    else:
        main(args.ema)
