"""Which fix for codebook collapse? Thirteen bottlenecks in benchmarks/quantizers.py's toy autoencoder.

A sibling of benchmarks/quantizers.py: its toy data (`_data`), MLP autoencoder (`autoencoder`),
data-dependent codebook start (`_init_codebook`), held-out evaluation (`evaluate`) and its plain VQ,
EMA, FSQ, LFQ and BSQ at 10 and 14 bits per token (`_quantizer`) are imported from it, unchanged.
Only the bottleneck changes between rows; the anchor is plain VQ of the same size and seed,
measured in the same run, and every ratio (x VQ) is taken seed by seed against it.

    method        module (reference_impls)                 settings
    vq            vq.VectorQuantizer                       beta 0.25, codebook learnt by its loss (anchor)
    vq-ema        vq.VectorQuantizer(ema=True)             decay 0.99
    restarts      jukebox.RestartingQuantizer              EMA 0.99; a code whose EMA count < 1 moves to a
                                                           random encoder output of the batch (released
                                                           threshold 1.0; with 256 outputs per batch at
                                                           most 256 codes can stay above it)
    kmeans        robust_vq.RobustVQ                       batch norm + projection, codebook lr 10x, a
                                                           reservoir of 20,480 projected outputs, the whole
                                                           codebook <- k-means (10 Lloyd steps) of it every
                                                           100 steps up to half of training (lancucki2020robust)
    cvq           cvq.OnlineClusteredQuantizer             cosine lookup, closest-feature anchors, decay 0.99
    straightened  straightened_vq.StraightenedVQ           vqtorch README: beta 0.98, affine_lr 10, sync_nu 0.2
                                                           (no alternating step, no dead-code replacement)
    simvq         simvq.SimVQ                              frozen random C (K, 16), trained linear W, beta 0.25
    ibq           ibq.IBQ                                  dot-product logits (`--ibq-logits distance`: -||z - c||^2),
                                                           straight-through on the softmax; no entropy loss
                                                           (ibq.py leaves the official one out)
    frozen-proj   vqgan_lc.FrozenTableVQ                   table = k-means centres (10 Lloyd steps) of the
                                                           16-d features of 2K toy inputs under a frozen,
                                                           randomly initialised copy of the toy encoder (the
                                                           stand-in for VQGAN-LC's pretrained encoder); one
                                                           trained projector 16 -> 16, weights 1 / 0.33. The
                                                           table is built once per size, shared by the seeds
    sq            sqvae.GaussianSQ                         s^2 = 1 + exp(l), l0 = log 20, Gumbel-softmax at
                                                           tau = exp(-1e-5 step); loss = ARELBO reconstruction
                                                           (D_x / 2) log mse + the latent terms (SQ-VAE's own
                                                           objective, not MSE + aux as the other rows); by
                                                           default at 1024 codes only (`--sq-sizes`): at 16384
                                                           its step costs about 10x plain VQ's, which would
                                                           take the run past 10 min of CPU
    fsq, lfq, bsq quantizers.py's settings                 levels [8,5,5,5] / [8,8,8,6,5]; 10 / 14 bits

    sizes   1024 codes (10 bits; FSQ 1000 codes) and 16384 codes (14 bits; FSQ 15360 codes)
    start   `--init paper` (default): vq, vq-ema, restarts and kmeans start their codes on encoder
            outputs of 4096 fresh draws plus 1% noise, as in quantizers.py (Jukebox's released
            bottleneck also starts from encoder outputs: openai/jukebox, jukebox/vqvae/bottleneck.py,
            init_k; kmeans from the projected ones); cvq,
            straightened, ibq and sq keep their module's start, that of their official code
            (U(-1/K, 1/K) for cvq, N(0, 1) for the others). `--init data` starts every learnt table on
            the data, `--init module` none (plain VQ from N(0, 1) collapses to one code in this toy).
    seeds   seed s seeds the network init, the quantiser, the training batches and the start; the
            toy problem (cluster centres, mixing matrix) and the 16,384 held-out points are the
            same for every seed. Seed 0 of vq, vq-ema, fsq, lfq and bsq repeats quantizers.py's run.
    train   Adam lr 1e-3 (kmeans: 1e-2 on its codebook), batch 256, `--steps` (default 400) steps

Figures, mean +- sd over the seeds:
    recon      mean squared reconstruction error on the held-out points (eval mode)
    usage      share of the codes the held-out points use
    ppl        perplexity exp(H) of the held-out code histogram
    ms/step    median CPU time of one training step (forward, backward, Adam, the module's own
               per-step updates), torch.utils.benchmark.Timer with time.process_time as its timer,
               blocked_autorange over extra steps after the evaluation (one thread)
    MB/step    peak of the memory allocated during one training step above what was live before it
               (parameters, optimiser state), from torch.profiler's allocation events
    one-off    CPU seconds and peak MB outside the steps: kmeans' re-estimations, frozen-proj's table
               k-means (once per size), in the JSON and the footer

Where a result depends on the toy: the data are synthetic (2048 Gaussian clusters in 8-d pushed
through tanh(A h) into 32-d), the model is a small MLP with one 16-d token per sample, training is
400 steps on one CPU thread, and the collapse fixes run with the settings above, not tuned. Usage
and perplexity depend on the number of clusters relative to the codebook size (2048 clusters;
1024 or 16384 codes) and on the held-out set size (16,384 points, one per code at 16384 codes);
the restarts threshold on the batch size; the frozen table on the stand-in features (a frozen,
randomly initialised encoder, not a pretrained one); times and memory on this CPU, these tiny
layers and batch 256. None of it is a measurement of the papers' systems.

Run:  nice -n 10 .venv/bin/python benchmarks/collapse.py            (about 10 min of CPU, one thread)
      .venv/bin/python benchmarks/collapse.py --steps 100 --seeds 0   (a quick look)
Writes benchmarks/collapse_results.json (with the date and `git rev-parse --short HEAD`) unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantizers import (  # noqa: E402  (benchmarks/ is not a package)
    BATCH,
    LATENT,
    N_EVAL,
    SEED,
    _commit,
    _data,
    _init_codebook,
    _quantizer,
    _unpack,
    autoencoder,
    evaluate,
)

from reference_impls.cvq import OnlineClusteredQuantizer  # noqa: E402
from reference_impls.ibq import IBQ  # noqa: E402
from reference_impls.jukebox import RestartingQuantizer  # noqa: E402
from reference_impls.robust_vq import RobustVQ, parameter_groups  # noqa: E402
from reference_impls.simvq import SimVQ  # noqa: E402
from reference_impls.sqvae import GaussianSQ, gumbel_temperature, reconstruction_loss  # noqa: E402
from reference_impls.straightened_vq import StraightenedVQ  # noqa: E402
from reference_impls.vqgan_lc import FrozenTableVQ, init_code_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "collapse_results.json"
METHODS = (
    "vq",
    "vq-ema",
    "restarts",
    "kmeans",
    "cvq",
    "straightened",
    "simvq",
    "ibq",
    "frozen-proj",
    "sq",
    "fsq",
    "lfq",
    "bsq",
)
LABELS = {
    "vq": "plain VQ (anchor)",
    "vq-ema": "EMA",
    "restarts": "restarts (Jukebox)",
    "kmeans": "k-means re-estimation (robust VQ)",
    "cvq": "CVQ anchors",
    "straightened": "affine + synchronised STE",
    "simvq": "SimVQ",
    "ibq": "IBQ",
    "frozen-proj": "frozen table + projector (VQGAN-LC)",
    "sq": "SQ-VAE",
    "fsq": "FSQ",
    "lfq": "LFQ",
    "bsq": "BSQ",
}
SIZES = {1024: 10, 16384: 14}  # codebook size -> bits per token of quantizers.BITS
RESERVOIR, REESTIMATE_EVERY, KMEANS_ITERS = 20480, 100, 10
TABLE_FEATURES = 2  # frozen-proj: k-means over TABLE_FEATURES * K toy inputs
LR = 1e-3


def peak_alloc_mb(fn) -> float:
    """Run fn() under torch.profiler and return the peak, in MiB, of the memory allocated during it
    above what was live before it (the running sum of the profiler's allocation and free events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    return max(itertools.accumulate((n for _, n in events), initial=0)) / 2**20


@dataclass
class Case:
    """One bottleneck in the toy: the module, its number of codes, z -> (z_q, indices, aux loss),
    the reconstruction loss, the optimiser's parameter groups and an optional hook after each step."""

    quant: nn.Module
    num_codes: int
    forward: object
    recon_loss: object = torch.nn.functional.mse_loss
    groups: list | None = None
    after_step: object = None
    one_off: dict = field(default_factory=lambda: {"cpu_s": 0.0, "peak_mb": 0.0})


_TABLES: dict[int, tuple[torch.Tensor, float, float]] = {}


def frozen_table(k: int, draw) -> tuple[torch.Tensor, float, float]:
    """frozen-proj's table for k codes: k-means centres of TABLE_FEATURES * k toy inputs (the
    stand-in for a pretrained encoder's features), built once per size; (table, CPU s, peak MB)."""
    if k not in _TABLES:
        with torch.random.fork_rng(), torch.no_grad():  # leaves the seed's own random stream alone
            torch.manual_seed(SEED + 6)
            frozen, _ = autoencoder(torch)  # a frozen, randomly initialised encoder: the stand-in
            feats = frozen(draw(TABLE_FEATURES * k, torch.Generator().manual_seed(SEED + 6)))  # (2K, 16)
        out: dict = {}
        t0 = time.process_time()

        def build():
            out["table"] = init_code_table(
                feats, k, n_iters=KMEANS_ITERS, generator=torch.Generator().manual_seed(SEED + 7)
            )

        mb = peak_alloc_mb(build)
        _TABLES[k] = (out["table"], time.process_time() - t0, mb)
    return _TABLES[k]


DATA_START = ("vq", "vq-ema", "restarts", "kmeans")  # the methods started on the data under --init paper


def build_case(method: str, k: int, seed: int, draw, enc: nn.Module, init: str, ibq_logits: str = "dot") -> Case:
    """The bottleneck `method` with k codes, its codebook started as `init` says (module docstring)."""
    bits = SIZES[k]
    on_data = init == "data" or (init == "paper" and method in DATA_START)
    g = torch.Generator().manual_seed(seed + 1)
    start = enc(draw(4096, torch.Generator().manual_seed(seed + 4))).detach()  # (4096, 16) encoder outputs
    if method in ("vq", "vq-ema", "fsq", "lfq", "bsq"):
        quant, num_codes, fwd = _quantizer(method, bits)
        if on_data:
            with torch.no_grad():
                _init_codebook(torch, method, quant, start, seed=seed)
        return Case(quant, num_codes, fwd)
    if method == "restarts":
        quant = RestartingQuantizer(k, LATENT, decay=0.99, threshold=1.0, generator=g)
        if on_data:
            with torch.no_grad():
                _init_codebook(torch, "vq-ema", quant, start, seed=seed)  # codebook and embed_sum
        return Case(quant, k, lambda z: _unpack(quant(z)))
    if method == "kmeans":
        quant = RobustVQ(k, LATENT, LATENT, reservoir_size=RESERVOIR, generator=g)
        if on_data:
            with torch.no_grad():
                _init_codebook(torch, "vq", quant.vq, quant.projection(quant.norm(start)), seed=seed)
        case = Case(quant, k, lambda z: _unpack(quant(z)))
        case.groups = parameter_groups(nn.ModuleList([enc, quant]), quant.vq.codebook, lr=LR)

        def reestimate(i: int, steps: int) -> None:
            if (i + 1) % REESTIMATE_EVERY == 0 and i + 1 <= steps // 2:
                t0 = time.process_time()
                mb = peak_alloc_mb(lambda: quant.reestimate(n_iters=KMEANS_ITERS))
                case.one_off["cpu_s"] += time.process_time() - t0
                case.one_off["peak_mb"] = max(case.one_off["peak_mb"], mb)
                case.one_off["reestimations"] = case.one_off.get("reestimations", 0) + 1

        case.after_step = reestimate
        return case
    if method == "cvq":
        quant = OnlineClusteredQuantizer(k, LATENT, generator=g)
    elif method == "straightened":
        quant = StraightenedVQ(k, LATENT, beta=0.98, sync_nu=0.2, affine_lr=10.0, generator=g)
    elif method == "ibq":
        quant = IBQ(k, LATENT, logits=ibq_logits, generator=g)
    elif method == "simvq":
        quant = SimVQ(k, LATENT, generator=g)
        return Case(quant, k, lambda z: _unpack(quant(z)))
    elif method == "frozen-proj":
        table, cpu_s, mb = frozen_table(k, draw)
        quant = FrozenTableVQ(table=table, dim=LATENT, generator=g)
        return Case(quant, k, lambda z: _unpack(quant(z)), one_off={"cpu_s": cpu_s, "peak_mb": mb, "shared": True})
    elif method == "sq":
        quant = GaussianSQ(k, LATENT, generator=g)
        counter = {"step": 0}

        def sq_forward(z):
            if not quant.training:
                return _unpack(quant(z))
            counter["step"] += 1
            return _unpack(quant(z, tau=gumbel_temperature(counter["step"]), generator=g))

        case = Case(quant, k, sq_forward, recon_loss=reconstruction_loss)
    else:
        raise ValueError(f"unknown method {method!r}")
    if method != "sq":
        case = Case(quant, k, lambda z: _unpack(quant(z)))
    if on_data:
        with torch.no_grad():
            _init_codebook(torch, "vq", quant, start, seed=seed)
    return case


def run_case(
    method: str,
    k: int,
    seed: int,
    steps: int,
    init: str = "paper",
    min_run_time: float = 0.3,
    ibq_logits: str = "dot",
) -> dict:
    """Train one bottleneck for `steps` steps, evaluate it on the held-out points, then time and
    profile further steps. Returns the figures of one row and seed."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    draw = _data(torch, SEED)  # the same toy problem for every seed
    enc, dec = autoencoder(torch)
    case = build_case(method, k, seed, draw, enc, init, ibq_logits)
    if case.groups:  # kmeans: the codebook at 10x lr; the decoder joins the rest at the base lr
        case.groups[1]["params"] += list(dec.parameters())
        opt = torch.optim.Adam(case.groups, lr=LR)
    else:
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *case.quant.parameters()], lr=LR)
    train_gen = torch.Generator().manual_seed(seed + 2)
    eval_x = draw(N_EVAL, torch.Generator().manual_seed(SEED + 3))

    def step():
        x = draw(BATCH, train_gen)  # (256, 32)
        z_q, _, aux = case.forward(enc(x))
        loss = case.recon_loss(dec(z_q), x) + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for m in (enc, dec, case.quant):
        m.train()
    t0 = time.process_time()
    for i in range(steps):
        step()
        if case.after_step is not None:
            case.after_step(i, steps)
    train_s = time.process_time() - t0
    for m in (enc, dec, case.quant):
        m.eval()
    row = {"method": method, "size": k, "codes": case.num_codes, "seed": seed}
    row.update(evaluate(torch, enc, dec, case.forward, eval_x, case.num_codes))
    for m in (enc, dec, case.quant):
        m.train()
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="step()", globals={"step": step}, timer=time.process_time, num_threads=1)
    row["ms"] = 1000 * timer.blocked_autorange(min_run_time=min_run_time).median
    row["mb"] = peak_alloc_mb(step)
    row["train_cpu_s"] = train_s
    row["one_off"] = case.one_off
    return row


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict]) -> list[dict]:
    """Per (size, method): mean and sd over seeds of each figure and of its ratio to plain VQ of the
    same size and seed."""
    anchor = {(r["size"], r["seed"]): r for r in rows if r["method"] == "vq"}
    out = []
    for k in sorted({r["size"] for r in rows}):
        for method in METHODS:
            mine = [r for r in rows if r["size"] == k and r["method"] == method]
            if not mine:
                continue
            s = {"size": k, "method": method, "label": LABELS[method], "codes": mine[0]["codes"], "seeds": len(mine)}
            for key in ("recon", "usage", "ppl", "ms", "mb"):
                s[key] = _stats([r[key] for r in mine])
                s[f"{key}_x"] = _stats([r[key] / anchor[(k, r["seed"])][key] for r in mine])
            s["one_off_cpu_s"] = _stats([r["one_off"]["cpu_s"] for r in mine])[0]
            s["one_off_peak_mb"] = max(r["one_off"]["peak_mb"] for r in mine)
            out.append(s)
    return out


def _pm(stat: tuple[float, float], fmt: str) -> str:
    return f"{stat[0]:{fmt}} ± {stat[1]:{fmt}}"


def markdown_table(summary: list[dict]) -> str:
    head = (
        "| codes | method | recon MSE | x VQ | usage % | x VQ | perplexity | x VQ "
        "| CPU ms/step | x VQ | MB/step | x VQ |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for s in summary:
        usage = (100 * s["usage"][0], 100 * s["usage"][1])
        lines.append(
            f"| {s['codes']} | {s['label']} | {_pm(s['recon'], '.4f')} | {_pm(s['recon_x'], '.2f')} "
            f"| {_pm(usage, '.1f')} | {_pm(s['usage_x'], '.1f')} | {_pm(s['ppl'], '.0f')} | {_pm(s['ppl_x'], '.1f')} "
            f"| {_pm(s['ms'], '.2f')} | {_pm(s['ms_x'], '.2f')} | {_pm(s['mb'], '.1f')} | {_pm(s['mb_x'], '.2f')} |"
        )
    return head + "\n".join(lines)


FOOTER = (
    "Toy-dependent: synthetic data (2048 Gaussian clusters in 8-d through tanh(A h) into 32-d), an MLP "
    "autoencoder with one 16-d token per sample, {steps} Adam steps of batch 256 on one CPU thread, each "
    "fix at the settings of benchmarks/collapse.py's docstring, untuned. Usage and perplexity depend on "
    "2048 clusters against 1024 / 16384 codes and on 16,384 held-out points; restarts on the batch size; "
    "the frozen table on its stand-in features (a frozen random copy of the toy encoder); times and memory "
    "on this CPU and these tiny layers. Not a measurement of any paper's system."
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps per run (default 400)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES), choices=sorted(SIZES))
    ap.add_argument(
        "--only", nargs="+", choices=METHODS, default=list(METHODS), help="a subset (vq always runs: the anchor)"
    )
    ap.add_argument("--init", choices=("paper", "data", "module"), default="paper", help="codebook start (docstring)")
    ap.add_argument("--sq-sizes", type=int, nargs="*", default=[1024], help="sizes at which sq runs (default 1024)")
    ap.add_argument("--ibq-logits", choices=("dot", "distance"), default="dot", help="IBQ's scores (default: dot)")
    ap.add_argument("--min-run-time", type=float, default=0.3, help="seconds of CPU the Timer spends per row")
    ap.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = ap.parse_args()
    if args.steps < 2 * REESTIMATE_EVERY and "kmeans" in args.only:
        print(f"note: kmeans re-estimates only at steps <= {args.steps // 2} that are multiples of {REESTIMATE_EVERY}")
    torch.set_num_threads(1)
    methods = ["vq", *[m for m in METHODS if m in args.only and m != "vq"]]
    commit, date = _commit(), datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    command = "nice -n 10 .venv/bin/python benchmarks/collapse.py" + "".join(
        f" {a}" for a in sys.argv[1:] if a != "--no-write"
    )
    print(
        f"collapse: commit {commit}, {date}, torch {torch.__version__}, 1 thread, {args.steps} steps of batch "
        f"{BATCH}, seeds {args.seeds}, init {args.init}, IBQ logits {args.ibq_logits}; "
        "anchor: plain VQ of the same size and seed",
        flush=True,
    )
    rows, t_start = [], time.process_time()
    for k in args.sizes:
        for method in methods:
            if method == "sq" and k not in args.sq_sizes:
                continue
            for seed in args.seeds:
                r = run_case(method, k, seed, args.steps, args.init, args.min_run_time, args.ibq_logits)
                rows.append(r)
                print(
                    f"  {k:>5} {method:<12} seed {seed}: recon {r['recon']:.4f} usage {100 * r['usage']:5.1f}% "
                    f"ppl {r['ppl']:8.1f} {r['ms']:6.2f} ms/step {r['mb']:6.1f} MB/step "
                    f"(train {r['train_cpu_s']:.1f} s CPU)",
                    file=sys.stderr,
                    flush=True,
                )
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    summary = summarise(rows)
    print()
    print(markdown_table(summary))
    print()
    one_offs = [s for s in summary if s["one_off_cpu_s"] > 0]
    for s in one_offs:
        print(
            f"One-off, {s['codes']} codes, {s['label']}: {s['one_off_cpu_s']:.1f} s CPU "
            f"{'once, shared by the seeds' if s['method'] == 'frozen-proj' else 'per training run'} "
            f"(peak {s['one_off_peak_mb']:.0f} MB), outside the steps timed above."
        )
    print(
        f"Mean ± sd over seeds {args.seeds}; x VQ is the ratio to plain VQ of the same size and seed. "
        f"Measured on {date} at commit {commit} with `{command}` ({cpu_s / 60:.1f} min of CPU in all)."
    )
    print(FOOTER.format(steps=args.steps))
    if not args.no_write:
        RESULTS.write_text(
            json.dumps(
                {
                    "date": date,
                    "commit": commit,
                    "command": command,
                    "torch": torch.__version__,
                    "threads": 1,
                    "steps": args.steps,
                    "batch": BATCH,
                    "seeds": args.seeds,
                    "init": args.init,
                    "cpu_seconds": round(cpu_s, 1),
                    "cases_cpu_seconds": round(time.process_time() - t_start, 1),
                    "toy": FOOTER.format(steps=args.steps),
                    "summary": summary,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
