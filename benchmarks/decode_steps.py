"""Forward passes and wall time to produce 256 tokens: autoregressive vs MaskGIT vs VQ-Diffusion.

One toy transformer (reference_impls.ar_prior.TokenPrior, random weights, seeded) serves every
sampler, so a forward pass costs the same everywhere except for the sequence length it sees:
    - autoregressive: ar_prior.sample with its key-value cache (one pass per token), and the plain
      causal loop without cache (one pass per token over the whole prefix);
    - MaskGIT (reference_impls.maskgit.decode) at T = 8 and T = 12, the same blocks without the
      causal mask;
    - VQ-Diffusion (reference_impls.discrete_diffusion.sample, mask-and-replace chain), the same
      bidirectional blocks, one pass per reverse step.
Codebook K = 256 (plus [MASK]); timings are for batch 1 on the CPU with one thread. VQ-Diffusion's
reverse step uses the closed-form posterior over (N, K + 1) rows (no transition matrices), so its
cost per step should be close to one forward pass: the column step/fwd divides each sampler's
time per pass by one bidirectional forward pass over all 256 positions (the anchor, measured in
the same run, median of 20); the goal for VQ-Diffusion is step/fwd <= 1.5.

To add a sampler: write a function returning (tokens (1, 256), forward_passes) and append it to
SAMPLERS. Run: python benchmarks/decode_steps.py   (about half a minute)
"""

from __future__ import annotations

import time
from statistics import median

import torch

from reference_impls import ar_prior, discrete_diffusion, maskgit

N, K = 256, 256  # tokens (a 16 x 16 grid) and codebook size
MASK = K  # [MASK] id, also the AR start token
DIM, LAYERS, HEADS = 64, 2, 4
VQ_DIFFUSION_STEPS = 100


def toy_transformer(seed: int = 0) -> ar_prior.TokenPrior:
    torch.manual_seed(seed)
    return ar_prior.TokenPrior(K + 1, DIM, LAYERS, HEADS, max_len=N + 1).eval()


def bidirectional_logits(model: ar_prior.TokenPrior, tokens: torch.Tensor) -> torch.Tensor:
    """The same weights with no attention mask: (B, N) tokens (ids <= K) -> (B, N, K) logits."""
    pos = torch.arange(tokens.shape[1])
    x = model.tok_emb(tokens) + model.pos_emb(pos)  # (B, N, D)
    for block in model.blocks:
        x = block(x)
    return model.head(model.ln_f(x))[..., :K]


def forward_seconds(model: ar_prior.TokenPrior, repeats: int = 20) -> float:
    """Median wall time of one bidirectional forward pass over all N positions (the anchor)."""
    tokens = torch.full((1, N), MASK, dtype=torch.long)
    bidirectional_logits(model, tokens)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bidirectional_logits(model, tokens)
        times.append(time.perf_counter() - t0)
    return median(times)


def autoregressive(model, generator, use_cache: bool):
    passes = 0
    inner = model.forward_incremental if use_cache else model.forward

    def counted(*args, **kwargs):
        nonlocal passes
        passes += 1
        return inner(*args, **kwargs)

    if use_cache:
        model.forward_incremental = counted
    else:
        model.forward = counted
    try:
        start = torch.full((1, 1), MASK, dtype=torch.long)
        seq = ar_prior.sample(model, start, N, generator=generator, use_cache=use_cache, vocab_range=(0, K))
    finally:
        del model.__dict__["forward_incremental" if use_cache else "forward"]
    return seq[:, 1:], passes


def masked(model, generator, steps: int):
    passes = 0

    def fn(tokens, step):
        nonlocal passes
        passes += 1
        return bidirectional_logits(model, tokens)

    tokens = torch.full((1, N), MASK, dtype=torch.long)
    out = maskgit.decode(fn, tokens, torch.ones(1, N, dtype=torch.bool), MASK, steps, generator)
    return out, passes


STEP_TIMES: dict[str, list[float]] = {"starts": [], "forward": []}  # filled by the VQ-Diffusion run


def vq_diffusion(model, generator, steps: int = VQ_DIFFUSION_STEPS):
    alpha_bars, gamma_bars = discrete_diffusion.vq_diffusion_cumulative(steps)
    schedule = discrete_diffusion.mask_and_replace_schedule(alpha_bars, gamma_bars, K)
    STEP_TIMES["starts"].clear()
    STEP_TIMES["forward"].clear()

    def timed(x, t):  # records when each reverse step starts and how long its forward pass takes
        t0 = time.perf_counter()
        STEP_TIMES["starts"].append(t0)
        out = bidirectional_logits(model, x)
        STEP_TIMES["forward"].append(time.perf_counter() - t0)
        return out

    out = discrete_diffusion.sample(timed, schedule, (1, N), generator)
    STEP_TIMES["starts"].append(time.perf_counter())  # the end of the last step
    return out.tokens, out.forward_passes


SAMPLERS = [
    ("autoregressive, kv cache", lambda m, g: autoregressive(m, g, use_cache=True)),
    ("autoregressive, no cache", lambda m, g: autoregressive(m, g, use_cache=False)),
    ("MaskGIT T=8", lambda m, g: masked(m, g, 8)),
    ("MaskGIT T=12", lambda m, g: masked(m, g, 12)),
    (f"VQ-Diffusion T={VQ_DIFFUSION_STEPS}", vq_diffusion),
]


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)
    model = toy_transformer()
    rows = []
    for name, run in SAMPLERS:
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        tokens, passes = run(model, g)
        seconds = time.perf_counter() - t0
        assert tokens.shape == (1, N) and int(tokens.max()) < K, name
        rows.append((name, passes, seconds))
    ref_passes, ref_seconds = rows[0][1], rows[0][2]
    fwd = forward_seconds(model)
    print(f"{N} tokens, codebook {K}, toy transformer d={DIM}, {LAYERS} layers, {HEADS} heads, batch 1, CPU")
    print(f"one bidirectional forward pass over {N} tokens: {fwd * 1e3:.2f} ms (the step/fwd anchor)")
    print(f"{'sampler':28s} {'passes':>7s} {'seconds':>8s} {'passes/AR':>10s} {'time/AR':>8s} {'step/fwd':>9s}")
    for name, passes, seconds in rows:
        print(
            f"{name:28s} {passes:7d} {seconds:8.3f} {passes / ref_passes:10.3f} {seconds / ref_seconds:8.3f}"
            f" {seconds / passes / fwd:9.3f}"
        )
    print("passes/AR and time/AR are against the autoregressive sampler with kv cache (first row)")
    # the goal, measured inside the VQ-Diffusion run itself: for every reverse step, its whole time
    # (forward pass + closed-form posterior + draw) over the time of its own forward pass; the median
    # over the T steps (each step is its own anchor, so load on the machine cancels)
    starts, forward = STEP_TIMES["starts"], STEP_TIMES["forward"]
    per_step = [(b - a) / f for a, b, f in zip(starts[:-1], starts[1:], forward, strict=True)]
    ratio = median(per_step)
    print(
        f"{rows[-1][0]}: a reverse step costs {ratio:.2f} forward passes of the same model (median over "
        f"{len(per_step)} steps; forward pass {median(forward) * 1e3:.2f} ms; goal <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
