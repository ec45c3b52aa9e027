# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 16  # one run on two idle cores; a fresh clone runs the longest notebooks first
# ---

# %% [markdown]
# # Sampling an autoregressive token prior: temperature, top-k and top-p
#
# The prior of a VQ-VAE pipeline is a next-token model over the flattened grid of codebook
# indices, $p(x) = \prod_i p(x_i \mid x_{<i})$ (`reference_impls.ar_prior`). How it is sampled
# matters as much as how it is trained: **temperature** $\tau$ rescales the logits
# ($p_i \propto \exp(l_i / \tau)$), **top-k** keeps the $k$ most likely tokens, **top-p** (nucleus)
# keeps the smallest set of most likely tokens whose mass reaches $p$.
#
# The toy: 4 x 4 grids over a vocabulary of 8 tokens. Every row is constant; the first row's
# token is uniform over the 8 tokens and each next row adds 1 or 2 (mod 8) with equal odds. So
# there are $8 \cdot 2^3 = 64$ valid grids, all equally likely. Each setting is scored against
# the data distribution itself: the share of valid samples, and the total variation (TV) between
# the samples' distribution and the uniform distribution over the 64 grids (0 for a perfect
# sampler up to sampling noise, 1 when no sample is valid). Every number is measured over several
# priors, each trained from its own seed, and shown with its spread.

# %% tags=["parameters"]
SEEDS = [0, 1, 2, 3, 4]  # 5 to 10 seeds: one prior trained per seed (close comparisons need five)
TRAIN_STEPS = 250  # training steps of each prior, 250 to 500
N_SAMPLES = 150  # samples per setting and seed, 150 to 300

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.ar_prior import (
    TokenPrior,
    filter_logits,
    next_token_loss,
    raster_flatten,
    raster_unflatten,
    sample,
)

torch.set_num_threads(1)
assert len(SEEDS) >= 5 and 250 <= TRAIN_STEPS <= 500 and 150 <= N_SAMPLES <= 300
V, H, W = 8, 4, 4
BOS = V  # an extra start token in front of every sequence
ENTROPY = (torch.log(torch.tensor(8.0)) + 3 * torch.log(torch.tensor(2.0))).item() / 16  # nats per predicted token


def toy_grids(n: int, gen: torch.Generator) -> torch.Tensor:
    """n grids (n, 4, 4): constant rows, row value = previous + 1 or + 2 (mod 8)."""
    first = torch.randint(0, V, (n, 1), generator=gen)
    steps = torch.randint(1, 3, (n, H - 1), generator=gen)
    rows = torch.cat([first, first + steps.cumsum(1)], 1) % V  # (n, H)
    return rows[:, :, None].expand(n, H, W).clone()


every_valid = torch.stack(
    [
        torch.tensor([[(f + sum(s[:r])) % V] * W for r in range(H)])
        for f in range(V)
        for s in [(a, b, c) for a in (1, 2) for b in (1, 2) for c in (1, 2)]
    ]
)  # (64, 4, 4)


def score(grids: torch.Tensor) -> dict[str, float]:
    """Share valid, TV to the uniform distribution over the 64 grids, distinct valid grids,
    and the share of broken grids one token away from a valid grid."""
    match = (grids[:, None] == every_valid[None]).flatten(2)  # (n, 64, 16)
    hits = match.all(-1)  # (n, 64)
    valid = hits.any(-1)
    hist = hits.float().sum(0) / len(grids)  # (64,)
    tv = 0.5 * ((hist - 1 / 64).abs().sum() + (1 - valid.float().mean())).item()
    broken = ~valid
    one_off = ((16 - match.sum(-1)).min(-1).values == 1) & broken
    return {
        "valid": valid.float().mean().item(),
        "tv": tv,
        "distinct": int((hist > 0).sum()),
        "one_off": (one_off.sum() / broken.sum().clamp(min=1)).item(),
        "broken": int(broken.sum()),
    }


def train_prior(seed: int) -> tuple[TokenPrior, float]:
    """Two transformer layers of width 32 on raster-order sequences [BOS, x_1, ..., x_16]."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    prior = TokenPrior(vocab_size=V + 1, dim=32, n_layers=2, n_heads=2, max_len=H * W + 1)
    opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(TRAIN_STEPS):
        seq = torch.cat([torch.full((64, 1), BOS), raster_flatten(toy_grids(64, gen))], dim=1)  # (64, 17)
        loss = next_token_loss(prior, seq)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return prior.eval(), sum(losses[-50:]) / 50


every_seq = torch.cat([torch.full((64, 1), BOS), raster_flatten(every_valid)], dim=1)  # (64, 17)


@torch.no_grad()
def exact_score(prior: TokenPrior, **kw) -> dict[str, float]:
    """The valid share and TV of the sampler itself, with no sampling noise: the probability that
    a setting draws each of the 64 valid grids is the product of its filtered next-token
    probabilities along that grid, and every other grid is invalid."""
    logits = prior(every_seq[:, :-1]).double()  # (64, 16, V + 1)
    logp = filter_logits(logits, **kw).log_softmax(-1).gather(-1, every_seq[:, 1:, None])[..., 0]  # (64, 16)
    p = logp.sum(-1).exp()  # (64,)
    return {"valid": p.sum().item(), "tv": 0.5 * ((p - 1 / 64).abs().sum() + 1 - p.sum()).item()}


SETTINGS = {
    "temperature": [{"temperature": t} for t in (0.3, 0.7, 1.0, 1.5, 2.2)],
    "top-k": [{"top_k": k} for k in (1, 2, 4, 8)],
    "top-p": [{"top_p": p} for p in (0.6, 0.9, 0.95)],
}
scores: dict[tuple[str, float], list[dict]] = {}
exact: dict[tuple[str, float], list[dict]] = {}  # the same settings scored from the probabilities
final_losses = []
for seed in SEEDS:
    prior, final = train_prior(seed)
    final_losses.append(final)
    for family, kws in SETTINGS.items():
        for kw in kws:
            seqs = sample(
                prior, torch.full((N_SAMPLES, 1), BOS), H * W, generator=torch.Generator().manual_seed(100 + seed), **kw
            )
            scores.setdefault((family, next(iter(kw.values()))), []).append(score(raster_unflatten(seqs[:, 1:], H, W)))
            exact.setdefault((family, next(iter(kw.values()))), []).append(exact_score(prior, **kw))
print(
    "final training loss per seed:",
    " ".join(f"{x:.3f}" for x in final_losses),
    f"nats/token (entropy bound {ENTROPY:.3f})",
)


def col(key: tuple[str, float], metric: str) -> torch.Tensor:
    return torch.tensor([s[metric] for s in scores[key]], dtype=torch.float64)


data_tv = torch.tensor([score(toy_grids(N_SAMPLES, torch.Generator().manual_seed(200 + s)))["tv"] for s in SEEDS])
print(
    f"\n{N_SAMPLES} samples per setting; mean +- std over {len(SEEDS)} seeds; "
    f"TV of {N_SAMPLES} draws of the data itself: {data_tv.mean():.2f} +- {data_tv.std():.2f}"
)
print(f"{'setting':22s} {'valid':>14s} {'TV to data':>14s} {'distinct valid':>16s}")
for key in scores:
    v, tv, d = col(key, "valid"), col(key, "tv"), col(key, "distinct")
    print(
        f"{key[0] + ' ' + str(key[1]):22s} {v.mean():7.1%} +-{v.std():5.1%} {tv.mean():7.2f} +-{tv.std():5.2f} "
        f"{d.mean():9.1f} +-{d.std():5.1f}"
    )

# %% [markdown]
# ## What holds over the seeds
# * Every prior learns the rule: at $\tau = 1$ over 85 % of its samples are valid, and its final
#   loss is close to the entropy bound (printed above).
# * Heating the distribution breaks grids: $\tau = 2.2$ gives fewer valid grids than $\tau = 1$,
#   on every seed.
# * Greedy decoding (top-k = 1) yields at most two distinct grids. Top-k = 2 can reach at most
#   16 of the 64 grids on any seed, because at the first position, where all 8 tokens are equally
#   right, it keeps only 2 of them; top-p = 0.9 keeps the first token free and reaches more.
# * Cooling ($\tau < 1$), small $k$ or small $p$ raise the valid share but move the samples'
#   distribution away from the data's (larger TV) once they cut valid grids.
# * The sampled TVs cannot rank the close settings: 150 to 300 draws of the data itself already
#   give a TV of about 0.19 to 0.26, larger than the gaps between settings, so a sampled tally of
#   top-p = 0.9 against $\tau = 0.7$ is sampling noise. Computed exactly from each prior's
#   probabilities (the second table: the probability of each of the 64 valid grids under a
#   setting is the product of its filtered next-token probabilities), the ranking is clear:
#   top-p = 0.95 is as close to the data as any setting on every seed (mean TV about 0.15 to 0.16,
#   against about 0.165 to 0.19 for $\tau = 1$ and top-k = 8), because it cuts the small mass the
#   prior puts on wrong tokens while keeping every valid one. Top-p = 0.9 is closer than
#   $\tau = 0.7$ on most seeds but not all (exact TV lower by about 0.01 to 0.02 on average; on 7 to
#   9 of 10 seeds in trials with seeds 20-24 and 101-105).

# %%
for s in range(len(SEEDS)):
    assert scores["temperature", 1.0][s]["valid"] > 0.85
    assert scores["temperature", 2.2][s]["valid"] < scores["temperature", 1.0][s]["valid"]
    assert scores["top-k", 1][s]["distinct"] <= 2
    assert scores["top-k", 2][s]["distinct"] <= 16 < scores["top-p", 0.9][s]["distinct"]
    assert scores["temperature", 0.3][s]["tv"] > scores["temperature", 1.0][s]["tv"]
    assert scores["top-k", 2][s]["tv"] > scores["top-k", 8][s]["tv"]
wins = int((col(("top-p", 0.9), "tv") < col(("temperature", 0.7), "tv")).sum())
print(f"sampled: top-p 0.9 closer to the data than temperature 0.7 (lower TV) on {wins} of {len(SEEDS)} seeds")


def exact_col(key: tuple[str, float], metric: str) -> torch.Tensor:
    return torch.tensor([s[metric] for s in exact[key]], dtype=torch.float64)


print(f"\nexact, from the priors' probabilities; mean +- std over {len(SEEDS)} seeds")
print(f"{'setting':22s} {'valid':>16s} {'TV to data':>14s}   TV per seed")
for key in exact:
    v, tv = exact_col(key, "valid"), exact_col(key, "tv")
    print(
        f"{key[0] + ' ' + str(key[1]):22s} {v.mean():8.1%} +-{v.std():5.1%} {tv.mean():7.3f} +-{tv.std():5.3f}   "
        + " ".join(f"{x:.3f}" for x in tv)
    )
exact_gap = exact_col(("top-p", 0.9), "tv") - exact_col(("temperature", 0.7), "tv")
print(
    f"exact: top-p 0.9 closer to the data than temperature 0.7 on {int((exact_gap < 0).sum())} of {len(SEEDS)} "
    f"seeds; TV difference {exact_gap.mean():+.3f} +- {exact_gap.std():.3f}"
)
one_off = col(("temperature", 2.2), "one_off")
print(f"at temperature 2.2, broken grids one token away from a valid grid: {one_off.mean():.0%} +- {one_off.std():.0%}")
assert one_off.max() < 0.5
# exactly: no setting is closer to the data than top-p = 0.95, on every seed
best = exact_col(("top-p", 0.95), "tv")
for key in exact:
    assert (best <= exact_col(key, "tv") + 1e-9).all()
assert (best < exact_col(("temperature", 1.0), "tv")).all()

# %% [markdown]
# ## The trade-off
# Each point is one setting, the mean over the seeds with the spread as bars: up is more valid
# samples, left is closer to the data distribution. At $\tau = 2.2$ most broken grids are more
# than one token away from any valid grid (the share one token away is printed above), so the
# errors are not confined to a single token.

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
for family in SETTINGS:
    keys = [k for k in scores if k[0] == family]
    xs = torch.stack([col(k, "tv") for k in keys])  # (settings, seeds)
    ys = torch.stack([col(k, "valid") for k in keys])
    ax.errorbar(xs.mean(1), ys.mean(1), xerr=xs.std(1), yerr=ys.std(1), fmt="o-", label=family, capsize=2)
    for k, x, y in zip(keys, xs.mean(1), ys.mean(1), strict=True):
        ax.annotate(str(k[1]), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.axvline(data_tv.mean(), color="k", ls=":", lw=1, label=f"{N_SAMPLES} draws of the data")
ax.set_xlabel("TV between samples and data distribution (lower is better)")
ax.set_ylabel("fraction of samples valid")
ax.set_title(f"Fidelity against distance to the data ({len(SEEDS)} seeds)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
