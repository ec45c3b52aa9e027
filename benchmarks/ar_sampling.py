"""Sampling speed of the shared token prior (reference_impls/ar_prior.py) with and without the KV cache.

Prints tokens per second for 256 and 1,024 sampled tokens, cached and uncached, their ratio, and
the cached cost per token at both lengths (which should stay roughly flat as the sequence grows,
while the uncached cost per token grows with the length). Runs in well under two minutes on 2 CPU cores.

    /work/main/.venv/bin/python benchmarks/ar_sampling.py
"""

from __future__ import annotations

import time

import torch

from reference_impls.ar_prior import TokenPrior, sample


def timed_sample(model: TokenPrior, n_new: int, use_cache: bool) -> float:
    prefix = torch.zeros(1, 1, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    sample(model, prefix, n_new, temperature=1.0, top_k=64, generator=g, use_cache=use_cache)
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one thread: steadier timings when the 2 cores are shared
    model = TokenPrior(vocab_size=512, dim=64, n_layers=2, n_heads=4, max_len=1025).eval()
    timed_sample(model, 16, True)  # warm-up
    rows = {}
    for n in (256, 1024):
        cached = timed_sample(model, n, True)
        uncached = timed_sample(model, n, False)
        rows[n] = (cached, uncached)
        print(
            f"{n:5d} tokens: cached {n / cached:8.1f} tok/s   uncached {n / uncached:8.1f} tok/s   "
            f"speed-up x{uncached / cached:5.1f}"
        )
    per_tok = {n: 1000 * rows[n][0] / n for n in rows}
    per_tok_unc = {n: 1000 * rows[n][1] / n for n in rows}
    growth = per_tok[1024] / per_tok[256]
    print(f"cached cost per token:   {per_tok[256]:.3f} ms at 256, {per_tok[1024]:.3f} ms at 1024 (x{growth:.2f})")
    print(
        f"uncached cost per token: {per_tok_unc[256]:.3f} ms at 256, {per_tok_unc[1024]:.3f} ms at 1024 "
        f"(x{per_tok_unc[1024] / per_tok_unc[256]:.2f})"
    )
    print(
        f"cached cost per token roughly flat (grows less than 2x for 4x the length): {'yes' if growth < 2.0 else 'no'}"
    )


if __name__ == "__main__":
    main()
