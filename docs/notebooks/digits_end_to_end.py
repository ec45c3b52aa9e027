# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 40  # one run on two idle cores; a fresh clone runs the longest notebooks first
#     papers:  # the paper pages that link here (beside each note's own notebook:)
#       - oord2017neural
#       - chang2022maskgit
#       - gu2022vector
#       - lancucki2020robust
#       - zheng2023online
#       - huh2023straightening
#       - zhu2024scaling
#       - zhu2025addressing
#       - shi2025scalable
# ---

# %% [markdown]
# # A VQ-VAE and an autoregressive prior, end to end, on real digits
#
# The other notebooks teach one mechanism each on synthetic toys. This one runs the whole
# pipeline of the survey's own kind of model, a VQ-VAE codebook as the latent space and an
# autoregressive prior over the token indices, on **real but small** data: scikit-learn's
# handwritten digits (`load_digits()`: 1,797 images of 8 x 8 pixels with 17 grey levels, shipped
# inside the package, nothing downloaded). Everything is `reference_impls.pipeline`:
#
# 1. a seeded train / validation / test split (70 / 15 / 15 %);
# 2. the VQ-VAE of `reference_impls.vqvae` with its EMA codebook: each digit becomes a 4 x 4 grid of
#    16 tokens from $K$ codes;
# 3. the token prior `reference_impls.ar_prior.TokenPrior`, trained by next-token prediction in raster
#    order, **stopped early** on the validation split;
# 4. held-out **bits per dimension** as a bound in two parts: the encoder is deterministic, so
#    $-\log p(x) \le -\log p(x \mid z^*) - \log p(z^*)$ with $z^*$ the digit's own tokens. The
#    prior's part is exact. The tokenizer's part reads the decoder's output as the mean of a
#    discretised logistic over the 17 grey levels (bins $[v - \tfrac12, v + \tfrac12]$, the end bins
#    open), one scale per rounded mean level, fitted on the validation split;
# 5. samples drawn from the prior **restricted to image tokens** (it has a start token too, which
#    must never be drawn at an image position), decoded to pictures.
#
# Each seed draws its own split and networks; every number is shown per seed and every stated
# conclusion is asserted on every seed. The networks are tiny (16 tokens, a prior of one block)
# and the budget is seconds, so nothing here says how these models behave on large images. A
# longer study, `benchmarks/digits_study.py` (a larger budget and prior, and three other priors
# on the same tokens), writes `benchmarks/digits_study.json`.

# %% tags=["parameters"]
SEEDS = [0, 1, 2]  # 3 to 5 seeds (each: its own split, networks and batches)
VQ_STEPS = 1000  # tokenizer training steps, 800 to 1500
NUM_CODES = 32  # codebook size K, 16 to 32
N_SAMPLES = 100  # samples per seed, 100 to 200

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from reference_impls import pipeline
from reference_impls.pipeline import Config

torch.set_num_threads(1)
assert 3 <= len(SEEDS) <= 5 and 800 <= VQ_STEPS <= 1500 and 16 <= NUM_CODES <= 32 and 100 <= N_SAMPLES <= 200
CONFIG = Config(
    num_codes=NUM_CODES, vq_steps=VQ_STEPS, vq_lr=3e-3, vq_batch=32, prior_dim=32, prior_layers=1, patience=3
)
levels, labels = pipeline.load_digits_levels()
print(f"{len(levels)} digits, {levels.shape[1]} x {levels.shape[2]} pixels, grey levels {levels.min()}..{levels.max()}")
runs = [pipeline.run(seed=s, config=CONFIG, n_samples=N_SAMPLES) for s in SEEDS]
sizes = runs[0].metrics["sizes"]
print(f"split: {sizes['train']} train, {sizes['val']} validation, {sizes['test']} test digits")

# %% [markdown]
# ## Held-out bits per dimension
# Per test digit, in bits per pixel (64 pixels). Two references, each an exact likelihood fitted on
# the training split: **independent pixels** (a 17-level histogram per pixel position) and, for the
# prior's part alone, **token frequencies** (each of the 16 tokens drawn independently from the
# training tokens' histogram).

# %%
keys = [
    ("test_bpd_tokenizer", "tokenizer part"),
    ("test_bpd_prior", "prior part"),
    ("test_bpd", "total (bound)"),
    ("test_bpd_pixel_histogram", "independent pixels"),
    ("test_bpd_prior_unigram", "token frequencies (prior part)"),
]
print(f"{'seed':>4s}" + "".join(f" {name:>30s}" for _, name in keys) + f" {'best step':>10s} {'stopped':>8s}")
for r in runs:
    m = r.metrics
    print(f"{r.seed:4d}" + "".join(f" {m[k]:30.3f}" for k, _ in keys) + f" {m['best_step']:10d} {m['stopped_at']:8d}")
col = {k: torch.tensor([r.metrics[k] for r in runs]) for k, _ in keys}
print("mean +- std " + "  ".join(f"{name}: {col[k].mean():.3f} +- {col[k].std():.3f}" for k, name in keys))

# %% [markdown]
# What holds on every seed:
# * The total bound is below the independent-pixel model's exact bits per dimension.
# * The tokenizer's part is the larger part: the decoder's error, read as a likelihood, costs more
#   bits than the 16 tokens do.
# * The prior's part is below that of the token frequencies: the prior uses the context of the
#   earlier tokens.

# %%
for r in runs:
    m = r.metrics
    assert m["test_bpd"] < m["test_bpd_pixel_histogram"]
    assert m["test_bpd_tokenizer"] > m["test_bpd_prior"]
    assert m["test_bpd_prior"] < m["test_bpd_prior_unigram"]

# %% [markdown]
# ## Early stopping
# Validation and training loss of the prior (nats per token), read every 50 steps; the marker is
# the step kept, and training stops after three readings without a better one. On every seed the
# training loss is still falling at the stop while the validation loss has levelled off above its
# best: from there on the prior fits its own training tokens better and held-out tokens no
# better.

# %%
fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3), sharey=True)
for ax, r in zip(axes, runs, strict=True):
    steps = [h["step"] for h in r.fit.history]
    ax.plot(steps, [h["train_nll"] for h in r.fit.history], label="train (running mean)")
    ax.plot(steps, [h["val_nll"] for h in r.fit.history], label="validation")
    best = next(h for h in r.fit.history if h["step"] == r.fit.best_step)
    ax.plot(best["step"], best["val_nll"], "ko")
    ax.set_title(f"seed {r.seed}: best step {r.fit.best_step}")
    ax.set_xlabel("prior step")
axes[0].set_ylabel("nats per token")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
for r in runs:
    best = next(h for h in r.fit.history if h["step"] == r.fit.best_step)
    last = r.fit.history[-1]
    assert r.fit.stopped_at > r.fit.best_step and last["val_nll"] > best["val_nll"]
    assert last["train_nll"] < best["train_nll"]

# %% [markdown]
# ## Reconstructions and samples
# Top: test digits of the first seed and their reconstructions through 16 tokens. Bottom: samples of
# the prior of each seed, decoded.


# %%
def show_row(axes_row, images, title=None):
    for ax, img in zip(axes_row, images, strict=False):
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=16)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        axes_row[0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center")


r0 = runs[0]
recon = pipeline.decode(r0.tokenizer, pipeline.encode(r0.tokenizer, pipeline.to_images(r0.data.test[:12])))
fig, axes = plt.subplots(2 + len(runs), 12, figsize=(12, 1.1 * (2 + len(runs))))
show_row(axes[0], r0.data.test[:12], "test")
show_row(axes[1], recon.clamp(0, 16), "reconstruction")
for row, r in zip(axes[2:], runs, strict=True):
    show_row(row, pipeline.decode(r.tokenizer, r.samples[:12]).clamp(0, 16), f"samples, seed {r.seed}")
fig.tight_layout()
plt.show()
assert all(int(r.samples.max()) < NUM_CODES for r in runs)  # no start token among the samples

# %% [markdown]
# ## Memorisation check
# For each decoded sample, the nearest training digit (Euclidean distance in grey levels); as the
# reference, the same distance for each test digit, which the models never saw. A prior that
# copied its training set would put its samples much closer to the training digits than the test
# digits are. Left: the distributions (all seeds pooled); right: samples of the first seed (top
# row) above their nearest training digits (bottom row).

# %%
d_sample, d_test, copies = [], [], []
for r in runs:
    images = pipeline.decode(r.tokenizer, r.samples).clamp(0, 16)
    d_sample.append(pipeline.nearest(images, r.data.train.double())[0])
    d_test.append(pipeline.nearest(r.data.test.double(), r.data.train.double())[0])
    copies.append(r.metrics["sample_copies"])
fig = plt.figure(figsize=(12, 3))
ax = fig.add_subplot(1, 3, 1)
bins = torch.linspace(0, 60, 31)
ax.hist(torch.cat(d_test).numpy(), bins=bins.numpy(), alpha=0.6, density=True, label="test digit to train")
ax.hist(torch.cat(d_sample).numpy(), bins=bins.numpy(), alpha=0.6, density=True, label="sample to train")
ax.set_xlabel("distance to the nearest training digit")
ax.legend(fontsize=8)
images = pipeline.decode(r0.tokenizer, r0.samples[:8]).clamp(0, 16)
_, idx = pipeline.nearest(images, r0.data.train.double())
for i in range(8):
    for j, img in enumerate([images[i], r0.data.train[idx[i]]]):
        a = fig.add_subplot(2, 12, 5 + i + 12 * j)
        a.imshow(img, cmap="gray_r", vmin=0, vmax=16)
        a.set_xticks([])
        a.set_yticks([])
fig.tight_layout()
plt.show()
for r, ds, dt, c in zip(runs, d_sample, d_test, copies, strict=True):
    print(
        f"seed {r.seed}: median distance sample -> train {ds.median():.1f}, test -> train {dt.median():.1f}; "
        f"samples whose 16 tokens equal a training digit's: {c:.0%}"
    )
    assert ds.median() > dt.median() and c <= 0.02

# %% [markdown]
# On every seed the samples lie farther from their nearest training digit than test digits do, and
# at most 2 % of them repeat a training digit's tokens: at this budget, with early stopping, the
# samples are not copies. (Farther is not better: part of the distance is samples that are less
# typical or less clean than real digits.)
#
# ## Codebook usage
# How often each of the $K$ codes is chosen over the training digits' tokens, sorted, per seed; the
# perplexity $\exp(H)$ of that histogram is $K$ when every code is equally used.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for r in runs:
    tokens = pipeline.encode(r.tokenizer, pipeline.to_images(r.data.train))
    counts = torch.bincount(tokens.flatten(), minlength=NUM_CODES).sort(descending=True).values
    ax.plot((counts / counts.sum()).numpy(), marker=".", label=f"seed {r.seed}")
    usage = r.metrics["codebook"]
    print(f"seed {r.seed}: {usage['used']} of {NUM_CODES} codes used, perplexity {usage['perplexity']:.1f}")
    assert usage["used"] >= 0.9 * NUM_CODES and usage["perplexity"] > 0.6 * NUM_CODES
ax.set_xlabel("code, by usage")
ax.set_ylabel("share of the training tokens")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The data-seeded EMA codebook does not collapse here: on every seed at least 90 % of the codes
# are used and the perplexity is above 60 % of $K$.


# %% [markdown]
# ## The longer study: the same tokens, other priors
# `benchmarks/digits_study.py` runs the pipeline on 3 seeds at a larger budget (3,000 tokenizer
# steps, a prior of two blocks, 64 wide) and fits three other priors of the same size to the
# same tokens, each stopped early on its validation bound within at most 1,500 steps:
#
# * **MaskGIT** (`reference_impls.maskgit`): trained on the cosine masking loss, sampled by 8-step
#   confident parallel decoding. It has no likelihood of its own; its figure is the masked-diffusion
#   bound of `reference_impls.md4` computed with its network, a bound for the random-order model
#   that network defines, not for what the 8-step sampler draws.
# * **absorbing discrete diffusion** (`reference_impls.discrete_diffusion`, D3PM's absorbing
#   chain, $T = 16$): its ELBO; sampled by its 16-step ancestral chain.
# * **masked diffusion** (`reference_impls.md4`, linear schedule): its continuous-time bound by
#   Monte Carlo; sampled in 16 ancestral steps.
#
# Every bits/dim adds the same tokenizer part to the prior's part. The sample score is a logistic
# regression trained on the training digits: "agreement" is how often it gives a decoded sample the
# label of the sample's nearest training digit, "entropy" that of its predicted classes
# ($\log_2 10 = 3.32$ bits when all ten are equally frequent). Time per sample is for a batch of
# 200 on one thread, measured on a shared machine under load: read it for its order, not its value.

# %%
STUDY = Path(pipeline.__file__).resolve().parents[1] / "benchmarks" / "digits_study.json"
study = json.loads(STUDY.read_text())
print(f"{STUDY.name}: {study['date']}, commit {study['commit'][:10]}, seeds {study['seeds']}")
summary, per_seed = study["summary"], study["per_seed"]


def pm(s: dict, f: str = ".3f", scale: float = 1.0) -> str:
    return f"{s['mean'] * scale:{f}} +- {s['std'] * scale:{f}}"


print(
    f"\n{'prior':28s} {'test bits/dim':>16s} {'prior part':>16s} {'steps':>6s} {'ms/sample':>14s} "
    f"{'agreement':>14s} {'entropy':>14s}  likelihood"
)
for name, row in summary["priors"].items():
    print(
        f"{name:28s} {pm(row['test_bpd']):>16s} {pm(row['test_bpd_prior']):>16s} "
        f"{row['sequential_steps']['mean']:6.0f} {pm(row['seconds_per_sample'], '.2f', 1000):>14s} "
        f"{pm(row['agreement_with_nearest'], '.2f'):>14s} {pm(row['class_entropy_bits'], '.2f'):>14s}  "
        f"{row['likelihood']}"
    )
anchors = [s["anchors"] for s in per_seed]
for what in ("test digits", "test reconstructions"):
    agree = torch.tensor([a[what]["agreement_with_nearest"] for a in anchors])
    ent = torch.tensor([a[what]["class_entropy_bits"] for a in anchors])
    print(
        f"{what:28s} {'':16s} {'':16s} {'':6s} {'':14s} {agree.mean():8.2f} +- {agree.std():.2f} "
        f"{ent.mean():8.2f} +- {ent.std():.2f}"
    )
p = summary["pipeline"]
print(
    f"\nthe autoregressive pipeline: total {pm(p['test_bpd'])}, tokenizer {pm(p['test_bpd_tokenizer'])}, "
    f"prior {pm(p['test_bpd_prior'])}, independent pixels {pm(p['test_bpd_pixel_histogram'])} bits/dim"
)

# %% [markdown]
# What holds on each of the study's seeds:
# * The autoregressive prior gives the lowest test bits per dimension, and it is the only exact
#   figure of the four. The three others' figures are bounds, and all three were still improving
#   when they reached the 1,500-step cap (their best validation step is at or near it), so the gap
#   is what this budget gives, not a limit of those priors.
# * Every prior's samples score well below real test digits and their reconstructions on the
#   classifier's agreement with the nearest training digit's label, and every prior's samples
#   cover the ten classes (entropy above 3 of the 3.32 bits). Among the four priors, no ordering of
#   the sample score holds on every seed beyond that.
# * MaskGIT takes 8 sequential steps, the others 16; per sample, absorbing diffusion was the
#   slowest and the autoregressive prior with its key-value cache the fastest on every seed.

# %%
others = [n for n in summary["priors"] if n != "autoregressive"]
for s in per_seed:
    rows = {r["prior"]: r for r in s["priors"]}
    ar, anchor = rows["autoregressive"], s["anchors"]["test reconstructions"]
    assert all(ar["test_bpd"] < rows[n]["test_bpd"] for n in others)
    assert all(rows[n]["stopped_at"] == 1500 and rows[n]["best_step"] >= 1300 for n in others)
    for r in rows.values():
        assert r["agreement_with_nearest"] < anchor["agreement_with_nearest"] - 0.1
        assert r["class_entropy_bits"] > 3.0
    assert rows["MaskGIT"]["sequential_steps"] < ar["sequential_steps"]
    seconds = {n: r["seconds_per_sample"] for n, r in rows.items()}
    assert (
        max(seconds, key=seconds.get) == "absorbing diffusion (D3PM)"
        and min(seconds, key=seconds.get) == "autoregressive"
    )

# %% [markdown]
# ## Without early stopping
# The study also trains the same autoregressive prior for 2,000 steps and keeps the last step
# (its early-stopped best is near step 300). On every seed it ends worse on test tokens than the
# token frequencies are, while it nearly memorises its training tokens, and 30 to 40 % of its
# samples repeat a training digit's 16 tokens exactly. Those samples score *better* on the
# classifier than the early-stopped prior's (they are training digits): a sample score alone would
# have preferred the overfitted prior, the held-out likelihood does not.

# %%
if "no_early_stopping" in summary:
    ne = summary["no_early_stopping"]
    print(
        f"prior trained {per_seed[0]['no_early_stopping']['steps']} steps, the last kept: test "
        f"{pm(ne['test_prior_bits_per_token'], '.2f')} bits/token, "
        f"train {pm(ne['train_prior_bits_per_token'], '.2f')}, "
        f"samples repeating a training digit's tokens {pm(ne['sample_copies'], '.2f')}"
    )
    for s in per_seed:
        m, ne_s = s["pipeline"], s["no_early_stopping"]
        print(
            f"seed {s['seed']}: early stopped {m['test_prior_bits_per_token']:.2f} bits/token (copies "
            f"{m['sample_copies']:.0%}); not stopped {ne_s['test_prior_bits_per_token']:.2f} (copies "
            f"{ne_s['sample_copies']:.0%}); token frequencies "
            f"{m['test_bpd_prior_unigram'] * 64 / 16:.2f}"
        )
        ar = next(r for r in s["priors"] if r["prior"] == "autoregressive")
        assert (
            ne_s["test_prior_bits_per_token"] > m["test_bpd_prior_unigram"] * 64 / 16 > m["test_prior_bits_per_token"]
        )
        assert ne_s["train_prior_bits_per_token"] < 0.5 * m["train_prior_bits_per_token"]
        assert ne_s["sample_copies"] >= 0.25 and m["sample_copies"] <= 0.02
        assert ne_s["agreement_with_nearest"] > ar["agreement_with_nearest"]


# %% [markdown]
# ## Tokenizers against generation
# Does a tokenizer that reconstructs better give a prior that generates better?
# `benchmarks/digits_tokenizers.py` keeps the pipeline (encoder, decoder, the autoregressive
# prior with early stopping, the two-part bound) and swaps the quantiser: plain VQ, the EMA
# codebook, SimVQ (a collapse fix: codes $W C$ over a frozen random basis $C$), FSQ (levels
# [4, 4] and [8, 8]) and LFQ (4 and 6 bits), each at $K$ = 16 and 64 codes, on three seeds. Its
# budget is short (600 tokenizer steps, the prior at most 600; the study above: 3,000 each), so
# its numbers are of that budget. Per tokenizer and size: test reconstruction error (mean squared
# error in grey levels), test bits per dimension (the whole bound, prior part in brackets) and the
# classifier's sample score of the study above.

# %%
TOKENIZERS = STUDY.parent / "digits_tokenizers.json"
tk = json.loads(TOKENIZERS.read_text())
print(f"{TOKENIZERS.name}: {tk['date']}, commit {tk['commit'][:10]}, seeds {tk['seeds']}; {tk['budget_note']}")
table = [
    "| tokenizer | K | test MSE (levels²) | test bits/dim | prior part | code perplexity | agreement | entropy |",
    "|---|---|---|---|---|---|---|---|",
]
for r in tk["summary"]:
    table.append(
        f"| {r['tokenizer']} | {r['num_codes']} | {pm(r['test_mse_levels'], '.2f')} | {pm(r['test_bpd'])} | "
        f"{pm(r['test_bpd_prior'])} | {pm(r['code_perplexity'], '.1f')} | {pm(r['agreement_with_nearest'], '.2f')} | "
        f"{pm(r['class_entropy_bits'], '.2f')} |"
    )
display(Markdown("\n".join(table)))

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
markers = {"plain VQ": "o", "EMA VQ": "s", "SimVQ": "D", "FSQ": "^", "LFQ": "v"}
for r in tk["summary"]:
    x, colour = r["test_mse_levels"], "tab:blue" if r["num_codes"] == 16 else "tab:red"
    for ax, y in zip(axes, (r["test_bpd"], r["agreement_with_nearest"]), strict=True):
        ax.errorbar(
            x["mean"],
            y["mean"],
            xerr=x["std"],
            yerr=y["std"],
            marker=markers[r["tokenizer"]],
            color=colour,
            capsize=2,
            linestyle="none",
        )
        ax.annotate(
            f"{r['tokenizer']} {r['num_codes']}",
            (x["mean"], y["mean"]),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=7,
        )
axes[0].set_ylabel("test bits/dim (bound)")
axes[1].set_ylabel("sample score: agreement with nearest digit's label")
for ax in axes:
    ax.set_xlabel("test reconstruction MSE (grey levels squared)")
fig.suptitle(f"mean +- std over seeds {tk['seeds']}; blue K = 16, red K = 64")
plt.tight_layout()
plt.show()

# %% [markdown]
# Conclusion, on every seed: going from 16 to 64 codes lowers the test reconstruction error of
# every tokenizer (by 22 to 40 %), yet never lowers its test bits per dimension by more than 0.01
# (the tokenizer's part falls, the prior's part rises about as much or more), and the tokenizer
# that reconstructs best (plain VQ at 64 codes, about 1.8 squared grey levels) is never the one
# with the lowest bits per dimension (plain or EMA VQ at 16 codes, about 2.35). FSQ at 16 codes
# reconstructs as well as EMA VQ at 16 yet costs 0.06 to 0.11 bits per dimension more. The sample
# score separates nothing: every tokenizer's agreement lies between 0.70 and 0.87 on every seed,
# its spread over the seeds up to 0.07. On these digits and at this budget, reconstructing better does
# not mean a better likelihood of the whole model.

# %%
for seed in tk["seeds"]:
    runs_s = {(r["tokenizer"], r["num_codes"]): r for r in tk["per_run"] if r["seed"] == seed}
    for kind in {k for k, _ in runs_s}:
        if (kind, 16) in runs_s and (kind, 64) in runs_s:
            small, large = runs_s[(kind, 16)], runs_s[(kind, 64)]
            assert large["test_mse_levels"] < 0.8 * small["test_mse_levels"]
            assert large["test_bpd"] > small["test_bpd"] - 0.01
    best_mse = min(runs_s, key=lambda k: runs_s[k]["test_mse_levels"])
    best_bpd = min(runs_s, key=lambda k: runs_s[k]["test_bpd"])
    assert best_mse == ("plain VQ", 64) and best_bpd in {("plain VQ", 16), ("EMA VQ", 16)}
    assert runs_s[("FSQ", 16)]["test_bpd"] > runs_s[("EMA VQ", 16)]["test_bpd"] + 0.05
    assert all(0.7 <= r["agreement_with_nearest"] < 0.87 for r in runs_s.values())

# %% [markdown]
# ## What the toy cannot show
# Sixteen tokens per image, a codebook of 32 and a prior of one or two small blocks fit in seconds;
# at this size a flat histogram per pixel is already a strong baseline (2.4 bits per dimension),
# and the margins are tenths of a bit. Whether what holds here holds for large images,
# long token sequences and priors of billions of parameters is not something 8 x 8 digits can
# answer; what carries over is the bookkeeping (a held-out split, early stopping on it, bits per
# dimension in parts, samples restricted to image tokens, a memorisation check) and the code that
# does it, which runs unchanged under `torchrun` (see `reference_impls/pipeline.py`).
