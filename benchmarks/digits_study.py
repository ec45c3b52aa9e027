"""The digits study: the survey's own kind of model (VQ-VAE tokens + autoregressive prior,
reference_impls.pipeline) over several seeds, beside three other priors fitted to the same tokens,
and the prior trained without early stopping. Writes benchmarks/digits_study.json (with the date
and the commit), which docs/notebooks/digits_end_to_end.py reads.

Per seed (one seed = one train / validation / test split of sklearn's digits and one draw of every
network): the tokenizer and the autoregressive prior of pipeline.run, then on the same tokens:
    - MaskGIT (reference_impls.maskgit): the bidirectional MaskedTransformer trained on the cosine
      masking loss, sampled by 8-step confident decoding. It has no likelihood of its own; its
      bits/dim are the masked-diffusion bound of reference_impls.md4 (linear schedule) computed with
      its network, a bound for the random-order model that network defines, not for the 8-step
      sampler's distribution.
    - absorbing discrete diffusion (reference_impls.discrete_diffusion, D3PM's absorbing family with
      T = 16 steps), trained on the hybrid loss, sampled by its 16-step ancestral chain; bits/dim:
      its ELBO, sum_{t=1..T} L_{t-1} with one x_t per term (L_T = 0: every token is masked at T).
    - masked diffusion (reference_impls.md4, linear schedule), trained on its continuous-time bound,
      sampled in 16 ancestral steps; bits/dim: that bound by Monte Carlo (16 times per sequence).
All three use the same network size as the autoregressive prior (64 wide, 2 blocks, 4 heads) and
early stopping on their validation bound, within OTHER_STEPS steps (the machine this was run on is
shared: the budget is what fitted; the JSON records where each stopped). Every bits/dim figure adds
the tokenizer's part (the same for all priors) to the prior's part; the autoregressive prior's part
is exact, the others are bounds.

Sample score: a logistic regression (sklearn) trained on the training digits; for 200 decoded
samples per prior, the classifier's agreement with the label of each sample's nearest training
digit, the entropy of its predicted classes (log2 10 = 3.32 bits when all ten are equally frequent)
and its mean top probability; the same for real test digits and their reconstructions as anchors.

Run: .venv/bin/python benchmarks/digits_study.py            (3 seeds, one after the other)
     seeds in parallel processes, then one file:
        .venv/bin/python benchmarks/digits_study.py --seeds 0 2 4 --out /tmp/a.json &
        .venv/bin/python benchmarks/digits_study.py --seeds 1 3 --out /tmp/b.json; wait
        .venv/bin/python benchmarks/digits_study.py --merge /tmp/a.json /tmp/b.json
     .venv/bin/python benchmarks/digits_study.py --quick --seeds 0   (a few steps of everything: it runs)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from reference_impls import discrete_diffusion, maskgit, md4, pipeline

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "digits_study.json"
N_SAMPLES = 200
MASKGIT_STEPS = 8
DIFFUSION_STEPS = 16  # D3PM's T and MD4's sampling steps (= the 16 tokens)
MD4_SCHEDULE = md4.MaskingSchedule("linear")
OVERFIT_STEPS = 2000  # the autoregressive prior without early stopping (its best step is near 300)
OTHER_STEPS = 1500  # at most, for each of the three other priors (early stopping may end sooner)
VAL_TERMS = 4  # Monte Carlo terms per validation sequence in early stopping (16 on test)


# ----------------------------------------------------------------------------- the classifier


def classifier(levels: torch.Tensor, labels: torch.Tensor):
    """Logistic regression on training digits (N, 8, 8) read as 64 values in [0, 1]."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=3000).fit((levels.flatten(1) / 16).numpy(), labels.numpy())


def sample_score(clf, images: torch.Tensor, train: torch.Tensor, train_labels: torch.Tensor) -> dict[str, float]:
    """The classifier on images (N, 8, 8) in grey levels: agreement with the nearest training digit's
    label, entropy (bits) of the predicted classes, mean top probability."""
    probs = torch.as_tensor(clf.predict_proba((images.flatten(1).clamp(0, 16) / 16).numpy()))  # (N, 10)
    pred = probs.argmax(1)
    _, nearest = pipeline.nearest(images, train.double())
    freq = torch.bincount(pred, minlength=10).double() / len(pred)
    entropy = -(freq[freq > 0] * freq[freq > 0].log2()).sum()
    return {
        "agreement_with_nearest": float((pred == train_labels[nearest]).double().mean()),
        "class_entropy_bits": float(entropy),
        "top_probability": float(probs.max(1).values.mean()),
    }


# ----------------------------------------------------------------------------- the other priors


def masked_net(config: pipeline.Config, seed: int, n_tokens: int) -> maskgit.MaskedTransformer:
    """The bidirectional network of MaskGIT, at the autoregressive prior's size; logits over the K codes."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return maskgit.MaskedTransformer(
            config.num_codes, n_tokens, dim=config.prior_dim, depth=config.prior_layers, n_heads=config.prior_heads
        )


def absorbing(config: pipeline.Config) -> discrete_diffusion.DiscreteSchedule:
    return discrete_diffusion.absorbing_schedule(discrete_diffusion.absorbing_betas(DIFFUSION_STEPS), config.num_codes)


def maskgit_loss(net: nn.Module, x: torch.Tensor, g: torch.Generator, config: pipeline.Config) -> torch.Tensor:
    mask = maskgit.training_mask(x.shape[0], x.shape[1], generator=g)
    return maskgit.masked_token_loss(net(maskgit.apply_mask(x, mask, config.num_codes)), x, mask)


def d3pm_loss(net: nn.Module, x: torch.Tensor, g: torch.Generator, config: pipeline.Config) -> torch.Tensor:
    loss, _, _ = discrete_diffusion.hybrid_loss(absorbing(config), lambda xt, t: net(xt), x, lam=0.01, generator=g)
    return loss


def md4_loss(net: nn.Module, x: torch.Tensor, g: torch.Generator, config: pipeline.Config) -> torch.Tensor:
    bound = md4.masked_diffusion_nll_bound(
        lambda z, t: net(z), x, mask_id=config.num_codes, schedule=MD4_SCHEDULE, n_t=1, generator=g
    )
    return bound.mean() / x.shape[1]


@torch.no_grad()
def d3pm_nll(
    net: nn.Module, x: torch.Tensor, g: torch.Generator, config: pipeline.Config, *, terms: int = DIFFUSION_STEPS
) -> torch.Tensor:
    """The absorbing chain's negative ELBO, nats per sequence (N,): sum over t of L_{t-1}, one x_t each.

    terms < T: each sequence's sum estimated from `terms` draws of t ~ U{1..T} (times T / terms),
    unbiased and cheaper (the validation reading of early stopping).
    """
    s = absorbing(config)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(terms):
        if terms == DIFFUSION_STEPS:
            t = torch.full((x.shape[0],), i + 1, dtype=torch.long)
        else:
            t = torch.randint(1, DIFFUSION_STEPS + 1, (x.shape[0],), generator=g)
        xt = discrete_diffusion.q_sample(s, x, t, g)
        _, probs = discrete_diffusion.model_x0_probs(s, lambda z, _t: net(z), xt, t)
        total += discrete_diffusion.vlb_terms(s, x, xt, t, probs)
    return total * (DIFFUSION_STEPS / terms)


@torch.no_grad()
def md4_nll(
    net: nn.Module, x: torch.Tensor, g: torch.Generator, config: pipeline.Config, *, terms: int = 16
) -> torch.Tensor:
    """MD4's bound, nats per sequence (N,), `terms` Monte Carlo times per sequence (16 on test)."""
    return md4.masked_diffusion_nll_bound(
        lambda z, t: net(z), x, mask_id=config.num_codes, schedule=MD4_SCHEDULE, n_t=terms, generator=g
    )


def train_early_stopped(
    net: nn.Module,
    loss: Callable,
    val_nll: Callable,
    train_tokens: torch.Tensor,
    val_tokens: torch.Tensor,
    *,
    config: pipeline.Config,
    seed: int,
) -> tuple[nn.Module, dict]:
    """AdamW on loss over random batches; every eval_every steps the validation NLL bound (nats per
    token, a fixed generator so evaluations are comparable); the best step's network is returned."""
    opt = torch.optim.AdamW(net.parameters(), lr=config.prior_lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed + 2)
    best, best_net, best_step, since, step = math.inf, copy.deepcopy(net), 0, 0, 0
    for step in range(1, min(config.prior_steps, OTHER_STEPS) + 1):
        idx = torch.randint(0, train_tokens.shape[0], (config.prior_batch,), generator=g)
        value = loss(net, train_tokens[idx], g, config)
        opt.zero_grad()
        value.backward()
        opt.step()
        if step % config.eval_every:
            continue
        net.eval()
        val = val_nll(net, val_tokens, torch.Generator().manual_seed(seed + 5), config, terms=VAL_TERMS).mean().item()
        net.train()
        if val < best:
            best, best_step, since = val, step, 0
            best_net.load_state_dict(net.state_dict())
        else:
            since += 1
            if since >= config.patience:
                break
    return best_net.eval(), {
        "best_step": best_step,
        "stopped_at": step,
        "val_nll_per_token": best / val_tokens.shape[1],
    }


# ----------------------------------------------------------------------------- one seed


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) / N_SAMPLES


@torch.no_grad()
def draw(
    name: str, net: nn.Module, n_tok: int, config: pipeline.Config, g: torch.Generator
) -> tuple[torch.Tensor, int]:
    """N_SAMPLES token sequences from one of the bidirectional priors, and its model calls (sequential steps)."""
    if name == "MaskGIT":
        return maskgit.generate(net, N_SAMPLES, n_tok, MASKGIT_STEPS, generator=g), MASKGIT_STEPS
    if name.startswith("absorbing"):
        out = discrete_diffusion.sample(lambda x, t: net(x), absorbing(config), (N_SAMPLES, n_tok), g)
        return out.tokens, out.forward_passes
    out = md4.sample(
        lambda z, t: net(z),
        (N_SAMPLES, n_tok),
        mask_id=config.num_codes,
        schedule=MD4_SCHEDULE,
        num_steps=DIFFUSION_STEPS,
        generator=g,
    )
    return out.tokens, out.forward_passes


def study_seed(seed: int, *, config: pipeline.Config, overfit: bool) -> dict:
    run = pipeline.run(seed=seed, config=config, n_samples=N_SAMPLES)
    data, tok = run.data, run.tokenizer
    enc = {name: pipeline.encode(tok, pipeline.to_images(x)) for name, x in asdict_split(data).items()}
    train_t, val_t, test_t = enc["train"], enc["val"], enc["test"]
    n_tok, dims = test_t.shape[1], 64
    tok_bpd = run.metrics["test_bpd_tokenizer"]
    clf = classifier(data.train, data.train_labels)

    def score(tokens: torch.Tensor) -> dict[str, float]:
        return sample_score(clf, pipeline.decode(tok, tokens), data.train, data.train_labels)

    def row(name, kind, nll, steps, seconds, tokens, extra=None) -> dict:
        prior_bpd = pipeline.bits_per_dim(nll, dims)
        images = pipeline.decode(tok, tokens).clamp(0, 16)
        d_sample, _ = pipeline.nearest(images, data.train.double())
        return {
            "prior": name,
            "likelihood": kind,
            "test_bpd": tok_bpd + prior_bpd,
            "test_bpd_prior": prior_bpd,
            "sequential_steps": steps,
            "seconds_per_sample": seconds,
            "sample_nearest_train_median": float(d_sample.median()),
            **score(tokens),
            **(extra or {}),
        }

    g = torch.Generator().manual_seed(seed + 7)
    ar_tokens, ar_sec = timed(lambda: pipeline.sample_tokens(run.fit.prior, N_SAMPLES, generator=g))
    rows = [
        row(
            "autoregressive",
            "exact (prior); bound through the tokenizer",
            pipeline.prior_nll(run.fit.prior, test_t),
            n_tok,
            ar_sec,
            ar_tokens,
            {"best_step": run.fit.best_step},
        )
    ]
    for name, loss, nll_fn, kind in [
        ("MaskGIT", maskgit_loss, md4_nll, "bound (masked-diffusion ELBO of its network)"),
        ("absorbing diffusion (D3PM)", d3pm_loss, d3pm_nll, "bound (ELBO, T = 16)"),
        ("masked diffusion (MD4)", md4_loss, md4_nll, "bound (continuous-time ELBO, Monte Carlo)"),
    ]:
        t0 = time.perf_counter()
        net, info = train_early_stopped(
            masked_net(config, seed, n_tok), loss, nll_fn, train_t, val_t, config=config, seed=seed
        )
        info["train_seconds"] = time.perf_counter() - t0
        nll = nll_fn(net, test_t, torch.Generator().manual_seed(seed + 6), config)
        gs = torch.Generator().manual_seed(seed + 8)
        t0 = time.perf_counter()
        tokens, steps = draw(name, net, n_tok, config, gs)
        sec = (time.perf_counter() - t0) / N_SAMPLES
        rows.append(row(name, kind, nll, steps, sec, tokens, info))
    images_test = data.test.double()
    anchors = {
        "test digits": sample_score(clf, images_test, data.train, data.train_labels),
        "test reconstructions": score(test_t),
        "classifier_test_accuracy": float(clf.score((data.test.flatten(1) / 16).numpy(), data.test_labels.numpy())),
    }
    train_set = {tuple(t) for t in train_t.tolist()}
    run.metrics["sample_copies"] = sum(tuple(t) in train_set for t in ar_tokens.tolist()) / N_SAMPLES
    run.metrics["train_prior_bits_per_token"] = pipeline.bits_per_dim(pipeline.prior_nll(run.fit.prior, train_t), n_tok)
    result = {"seed": seed, "pipeline": run.metrics, "priors": rows, "anchors": anchors}
    result["pipeline"]["val_curve"] = run.fit.history
    if overfit:
        result["no_early_stopping"] = overfit_prior(run, train_t, val_t, test_t, score, config=config, seed=seed)
    if seed == 0:
        result["pictures"] = {
            "test": data.test[:12].tolist(),
            "reconstructions": pipeline.decode(tok, test_t[:12]).clamp(0, 16).round(decimals=2).tolist(),
            "samples": pipeline.decode(tok, ar_tokens[:24]).clamp(0, 16).round(decimals=2).tolist(),
        }
    return result


def asdict_split(data: pipeline.Split) -> dict[str, torch.Tensor]:
    return {"train": data.train, "val": data.val, "test": data.test}


def overfit_prior(run, train_t, val_t, test_t, score, *, config: pipeline.Config, seed: int) -> dict:
    """The autoregressive prior trained OVERFIT_STEPS steps with no early stopping (the last step kept):
    train_prior's loop (same seed, same batches), the validation NLL read every tenth of the way."""
    prior = pipeline.make_prior(config=config, seed=seed).train()
    loss_fn = pipeline._PriorLoss(prior)
    opt = torch.optim.AdamW(prior.parameters(), lr=config.prior_lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed + 2)
    seqs = pipeline.with_start(train_t, config.num_codes)
    curve = []
    for step in range(1, OVERFIT_STEPS + 1):
        idx = torch.randint(0, seqs.shape[0], (config.prior_batch,), generator=g)
        loss = loss_fn(seqs[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (OVERFIT_STEPS // 10) == 0:
            prior.eval()
            val = pipeline.prior_nll(prior, val_t).mean().item() / val_t.shape[1]
            curve.append({"step": step, "val_nll": val})
            prior.train()
    prior.eval()
    tokens = pipeline.sample_tokens(prior, N_SAMPLES, generator=torch.Generator().manual_seed(seed + 7))
    train_set = {tuple(t) for t in train_t.tolist()}
    n_tok = test_t.shape[1]
    return {
        "steps": OVERFIT_STEPS,
        "val_curve": curve,
        "test_prior_bits_per_token": pipeline.bits_per_dim(pipeline.prior_nll(prior, test_t), n_tok),
        "train_prior_bits_per_token": pipeline.bits_per_dim(pipeline.prior_nll(prior, train_t), n_tok),
        "sample_copies": sum(tuple(t) in train_set for t in tokens.tolist()) / N_SAMPLES,
        **score(tokens),
    }


# ----------------------------------------------------------------------------- summary


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarise(per_seed: list[dict]) -> dict:
    keys = ["test_bpd", "test_bpd_tokenizer", "test_bpd_prior", "test_bpd_prior_unigram", "test_bpd_pixel_histogram"]
    keys += ["test_prior_bits_per_token", "test_mse_levels", "sample_copies", "best_step"]
    out = {"pipeline": {k: spread([s["pipeline"][k] for s in per_seed]) for k in keys}}
    out["priors"] = {}
    for i, r in enumerate(per_seed[0]["priors"]):
        cols = [k for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        out["priors"][r["prior"]] = {k: spread([float(s["priors"][i][k]) for s in per_seed]) for k in cols}
        out["priors"][r["prior"]]["likelihood"] = r["likelihood"]
    if "no_early_stopping" in per_seed[0]:
        cols = ["test_prior_bits_per_token", "train_prior_bits_per_token", "sample_copies", "agreement_with_nearest"]
        out["no_early_stopping"] = {k: spread([s["no_early_stopping"][k] for s in per_seed]) for k in cols}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-overfit", action="store_true", help="skip the prior trained without early stopping")
    parser.add_argument("--quick", action="store_true", help="a few steps of everything: checks the script runs")
    parser.add_argument("--merge", type=Path, nargs="+", help="combine the per-seed results of these files into --out")
    args = parser.parse_args()
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        per_seed = sorted((s for p in parts for s in p["per_seed"]), key=lambda s: s["seed"])
        result = parts[0] | {
            "seeds": [s["seed"] for s in per_seed],
            "command": parts[0]["command"].split(" --seeds")[0]
            + " --seeds "
            + " ".join(str(s["seed"]) for s in per_seed),
            "seconds": sum(p["seconds"] for p in parts),
            "summary": summarise(per_seed),
            "per_seed": per_seed,
        }
        args.out.write_text(json.dumps(result, indent=1))
        report(result)
        return
    torch.set_num_threads(1)
    config = pipeline.Config()
    if args.quick:
        global OVERFIT_STEPS
        config = replace(config, vq_steps=20, prior_steps=20, eval_every=10)
        OVERFIT_STEPS = 20
    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    per_seed = []
    for seed in args.seeds:
        per_seed.append(study_seed(seed, config=config, overfit=not args.no_overfit))
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        result = {  # written after every seed, so that a stopped run keeps the seeds it finished
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit,
            "command": "python benchmarks/digits_study.py --seeds " + " ".join(map(str, args.seeds)),
            "seconds": time.perf_counter() - started,
            "config": asdict(config),
            "seeds": [s["seed"] for s in per_seed],
            "summary": summarise(per_seed),
            "per_seed": per_seed,
        }
        args.out.write_text(json.dumps(result, indent=1))
    report(result)


def report(result: dict) -> None:
    for name, r in result["summary"]["priors"].items():
        print(
            f"{name:28s} {r['test_bpd']['mean']:.3f} +- {r['test_bpd']['std']:.3f} bits/dim  "
            f"{r['sequential_steps']['mean']:.0f} steps  {1000 * r['seconds_per_sample']['mean']:.2f} ms/sample  "
            f"agreement {r['agreement_with_nearest']['mean']:.2f}  entropy {r['class_entropy_bits']['mean']:.2f}"
        )


if __name__ == "__main__":
    main()
