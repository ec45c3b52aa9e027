"""Tokenizers against generation on the digits: does a tokenizer that reconstructs better give a
prior that generates better? Writes benchmarks/digits_tokenizers.json (with the date and the
commit), which docs/notebooks/digits_end_to_end.py reads.

The pipeline of reference_impls.pipeline (the VQ-VAE's encoder and decoder, the autoregressive
prior with early stopping, the two-part test bits/dim bound), with the VQ-VAE's quantiser swapped
for one of five, each at two codebook sizes K:
    - plain VQ      reference_impls.vq.VectorQuantizer, codebook and commitment losses (VQ-VAE Eq. 3)
    - EMA VQ        the same with the EMA codebook (VQ-VAE-2; the pipeline's default)
    - SimVQ         reference_impls.simvq (a collapse fix: codes W C over a frozen random basis C)
    - FSQ           reference_impls.fsq, levels [4, 4] (K = 16) and [8, 8] (K = 64), projections
                    16 -> 2 -> 16 around it, no auxiliary loss
    - LFQ           reference_impls.lfq, log2 K bits, projections around it, its entropy penalty at
                    the module's defaults (weight 0.1, gamma 1, no commitment)
The two VQ variants start from data (pipeline.train_tokenizer's init_codes); SimVQ, FSQ and LFQ
have no such step. Every other size and budget is pipeline.Config's, except the steps: the
tokenizer trains VQ_STEPS = 600 steps and the prior at most PRIOR_STEPS = 600 (the study: 3,000
each), so that 30 runs fit about 15 minutes on a shared 2-core machine (recorded in the JSON).
Every number here is of this short budget, not of the study's models.

Per run: test reconstruction error (mean squared error in grey levels, 0..16), test bits/dim in
its two parts, codebook use, and the sample score of benchmarks/digits_study.py (a logistic
regression trained on the training digits: agreement of its prediction with the label of each
sample's nearest training digit, and the entropy of its predicted classes) on 200 samples.

Run: .venv/bin/python benchmarks/digits_tokenizers.py                (3 seeds, one process)
     two processes, then one file:
        .venv/bin/python benchmarks/digits_tokenizers.py --seeds 0 2 --out /tmp/a.json &
        .venv/bin/python benchmarks/digits_tokenizers.py --seeds 1 --out /tmp/b.json; wait
        .venv/bin/python benchmarks/digits_tokenizers.py --merge /tmp/a.json /tmp/b.json
     .venv/bin/python benchmarks/digits_tokenizers.py --quick --seeds 0   (a few steps: it runs)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from digits_study import classifier, sample_score, spread  # noqa: E402

from reference_impls import fsq, lfq, pipeline, simvq  # noqa: E402
from reference_impls.vqvae import VQVAE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "digits_tokenizers.json"
KINDS = ["plain VQ", "EMA VQ", "SimVQ", "FSQ", "LFQ"]
SIZES = [16, 64]
FSQ_LEVELS = {16: [4, 4], 64: [8, 8]}
VQ_STEPS = 600
PRIOR_STEPS = 600  # at most (early stopping on validation; the study allows 3,000, its best step is near 300)
N_SAMPLES = 200


def make(kind: str, num_codes: int, *, config: pipeline.Config, seed: int) -> VQVAE:
    """The pipeline's VQ-VAE with its quantiser replaced by `kind` at K = num_codes."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = VQVAE(
            in_ch=1,
            hidden=config.hidden,
            num_codes=num_codes,
            code_dim=config.code_dim,
            beta=config.beta,
            ema=kind == "EMA VQ",
            downsample=config.downsample,
            generator=g,
        )
        d = config.code_dim
        if kind == "SimVQ":
            model.quantizer = simvq.SimVQ(num_codes, d, beta=config.beta, generator=g)
        elif kind == "FSQ":
            model.quantizer = fsq.FSQ(FSQ_LEVELS[num_codes], dim=d)
        elif kind == "LFQ":
            model.quantizer = lfq.LFQ(int(math.log2(num_codes)), dim=d)
    return model


def tokenizer_loss(model: VQVAE, x: torch.Tensor) -> torch.Tensor:
    """Squared reconstruction error plus the quantiser's own loss (FSQ has none)."""
    x_hat, q = model(x)
    return F.mse_loss(x_hat, x) + getattr(q, "loss", 0.0)


def train(kind: str, num_codes: int, images: torch.Tensor, *, config: pipeline.Config, seed: int) -> nn.Module:
    """pipeline.train_tokenizer's loop (same batches from the same generator) for any quantiser."""
    model = make(kind, num_codes, config=config, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    pick = images[torch.randperm(images.shape[0], generator=g)[:512]]
    if kind in ("plain VQ", "EMA VQ"):
        model.init_codes(pick, generator=g)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=config.vq_lr)
    for _ in range(config.vq_steps):
        idx = torch.randint(0, images.shape[0], (config.vq_batch,), generator=g)
        loss = tokenizer_loss(model, images[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def one(kind: str, num_codes: int, data: pipeline.Split, clf, *, config: pipeline.Config, seed: int) -> dict:
    t0 = time.perf_counter()
    cfg = replace(config, num_codes=num_codes)
    tok = train(kind, num_codes, pipeline.to_images(data.train), config=cfg, seed=seed)
    train_t, val_t, test_t = (pipeline.encode(tok, pipeline.to_images(x)) for x in (data.train, data.val, data.test))
    fit = pipeline.train_prior(train_t, val_t, config=cfg, seed=seed)
    scales = pipeline.fit_scales(data.val, pipeline.decode(tok, val_t))
    parts = pipeline.bound_parts(tok, fit.prior, data.test, scales)
    samples = pipeline.sample_tokens(fit.prior, N_SAMPLES, generator=torch.Generator().manual_seed(seed + 3))
    images = pipeline.decode(tok, samples).clamp(0, 16)
    return {
        "tokenizer": kind,
        "num_codes": num_codes,
        "seed": seed,
        "test_mse_levels": float(((pipeline.decode(tok, test_t) - data.test) ** 2).mean()),
        "test_bpd": pipeline.bits_per_dim(parts["tokenizer"] + parts["prior"], 64),
        "test_bpd_tokenizer": pipeline.bits_per_dim(parts["tokenizer"], 64),
        "test_bpd_prior": pipeline.bits_per_dim(parts["prior"], 64),
        "codes_used": pipeline.codebook_usage(train_t, num_codes)["used"],
        "code_perplexity": pipeline.codebook_usage(train_t, num_codes)["perplexity"],
        "prior_best_step": fit.best_step,
        **sample_score(clf, images, data.train, data.train_labels),
        "seconds": time.perf_counter() - t0,
    }


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for kind in KINDS:
        for k in SIZES:
            group = [r for r in rows if r["tokenizer"] == kind and r["num_codes"] == k]
            if not group:
                continue
            cols = [c for c, v in group[0].items() if isinstance(v, float) and c != "seconds"]
            out.append({"tokenizer": kind, "num_codes": k, "seeds": [r["seed"] for r in group]})
            out[-1] |= {c: spread([r[c] for r in group]) for c in cols}
    return out


def result_of(rows: list[dict], *, config: pipeline.Config, seeds: list[int], commit: str, seconds: float) -> dict:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "command": "python benchmarks/digits_tokenizers.py --seeds " + " ".join(map(str, seeds)),
        "seconds": seconds,
        "config": asdict(config),
        "fsq_levels": FSQ_LEVELS,
        "n_samples": N_SAMPLES,
        "budget_note": f"tokenizer {config.vq_steps} steps, prior at most {config.prior_steps} "
        "(the study's pipeline: 3000 each), to fit ~15 min on a shared 2-core machine",
        "seeds": seeds,
        "summary": summarise(rows),
        "per_run": rows,
    }


def report(result: dict) -> None:
    for r in result["summary"]:
        print(
            f"{r['tokenizer']:9s} K={r['num_codes']:3d}  mse {r['test_mse_levels']['mean']:.2f} +- "
            f"{r['test_mse_levels']['std']:.2f}  bpd {r['test_bpd']['mean']:.3f} +- {r['test_bpd']['std']:.3f} "
            f"(tok {r['test_bpd_tokenizer']['mean']:.3f}, prior {r['test_bpd_prior']['mean']:.3f})  "
            f"agree {r['agreement_with_nearest']['mean']:.2f}  entropy {r['class_entropy_bits']['mean']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--merge", type=Path, nargs="+")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        rows = sorted((r for p in parts for r in p["per_run"]), key=lambda r: r["seed"])
        seeds = sorted({r["seed"] for r in rows})
        config = pipeline.Config(**parts[0]["config"])
        result = result_of(
            rows,
            config=config,
            seeds=seeds,
            commit=parts[0]["commit"],
            seconds=sum(p["seconds"] for p in parts),
        )
        result["date"] = parts[0]["date"]
        args.out.write_text(json.dumps(result, indent=1))
        report(result)
        return
    torch.set_num_threads(1)
    config = replace(pipeline.Config(), vq_steps=VQ_STEPS, prior_steps=PRIOR_STEPS)
    if args.quick:
        config = replace(config, vq_steps=20, prior_steps=20, eval_every=10)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    levels, labels = pipeline.load_digits_levels()
    rows = []
    for seed in args.seeds:
        data = pipeline.split(
            levels, labels, seed=seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction
        )
        clf = classifier(data.train, data.train_labels)
        for k in SIZES:  # every tokenizer at the small size first: a stopped run keeps whole sizes
            for kind in KINDS:
                rows.append(one(kind, k, data, clf, config=config, seed=seed))
                print(f"seed {seed} {kind} K={k}: {rows[-1]['seconds']:.0f} s", flush=True)
                result = result_of(  # written after every run, so that a stopped run keeps what it finished
                    rows, config=config, seeds=args.seeds, commit=commit, seconds=time.perf_counter() - started
                )
                args.out.write_text(json.dumps(result, indent=1))
    report(result)


if __name__ == "__main__":
    main()
