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
# there are $8 \cdot 2^3 = 64$ valid grids, all equally likely, and a sample is either valid or
# not: fidelity and diversity can both be counted exactly.

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.ar_prior import (TokenPrior, filter_logits, next_token_loss, raster_flatten,
                                      raster_unflatten, sample)

torch.set_num_threads(1)
torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
V, H, W = 8, 4, 4
BOS = V  # an extra start token in front of every sequence


def toy_grids(n: int) -> torch.Tensor:
    """n grids (n, 4, 4): constant rows, row value = previous + 1 or + 2 (mod 8)."""
    first = torch.randint(0, V, (n, 1), generator=gen)
    steps = torch.randint(1, 3, (n, H - 1), generator=gen)
    rows = torch.cat([first, first + steps.cumsum(1)], 1) % V  # (n, H)
    return rows[:, :, None].expand(n, H, W).clone()


def is_valid(grids: torch.Tensor) -> torch.Tensor:
    """(n, 4, 4) -> (n,) bool: the grid follows the rule."""
    constant_rows = (grids == grids[:, :, :1]).all(2).all(1)
    step = (grids[:, 1:, 0] - grids[:, :-1, 0]) % V
    return constant_rows & ((step == 1) | (step == 2)).all(1)


print(toy_grids(2))

# %% [markdown]
# ## Train a tiny prior
# Two transformer layers of width 32, trained on raster-order sequences `[BOS, x_1, ..., x_16]`.
# The lowest possible loss is the entropy of the data per predicted token:
# $(\ln 8 + 3 \ln 2) / 16 \approx 0.26$ nats.

# %%
prior = TokenPrior(vocab_size=V + 1, dim=32, n_layers=2, n_heads=2, max_len=H * W + 1)
opt = torch.optim.Adam(prior.parameters(), lr=3e-3)
losses = []
for step in range(300):
    seq = torch.cat([torch.full((64, 1), BOS), raster_flatten(toy_grids(64))], dim=1)  # (64, 17)
    loss = next_token_loss(prior, seq)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
prior.eval()
print(f"final loss {sum(losses[-20:]) / 20:.3f} nats/token (entropy bound 0.260)")


# %%
def draw(n: int = 300, seed: int = 1, **kwargs) -> tuple[float, int, torch.Tensor]:
    """Sample n grids; return (fraction valid, number of distinct valid grids, grids)."""
    seqs = sample(prior, torch.full((n, 1), BOS), H * W, generator=torch.Generator().manual_seed(seed), **kwargs)
    grids = raster_unflatten(seqs[:, 1:], H, W)
    ok = is_valid(grids)
    distinct = len({tuple(g) for g in grids[ok].reshape(-1, H * W).tolist()})
    return ok.float().mean().item(), distinct, grids


settings = {
    "temperature": [dict(temperature=t) for t in (0.3, 0.5, 0.7, 1.0, 1.3, 1.7, 2.2)],
    "top-k": [dict(top_k=k) for k in (1, 2, 3, 4, 6, 8)],
    "top-p": [dict(top_p=p) for p in (0.3, 0.6, 0.8, 0.9, 0.95, 1.0)],
}
results = {family: [(kw, *draw(**kw)[:2]) for kw in kws] for family, kws in settings.items()}
for family, rows in results.items():
    for kw, valid, distinct in rows:
        print(f"{family:12s} {kw!s:22s} valid {valid:5.1%}  distinct valid grids {distinct:2d}/64")

# %%
temp = {kw["temperature"]: (v, d) for kw, v, d in results["temperature"]}
topk = {kw["top_k"]: (v, d) for kw, v, d in results["top-k"]}
topp = {kw["top_p"]: (v, d) for kw, v, d in results["top-p"]}
assert temp[1.0][0] > 0.85  # the prior has learned the rule
assert temp[2.2][0] < temp[1.0][0]  # heating the distribution breaks grids
assert topk[1][1] <= 2  # greedy decoding: (nearly) one grid
assert topk[2][1] <= 16 < topp[0.9][1]  # k = 2 also cuts the uniform first token to 2 of 8 values

# %% [markdown]
# ## The trade-off
# Each point is one setting (300 samples). Up is more valid grids, right is more of the 64 valid
# grids reached. Low temperature, small $k$ and small $p$ all buy validity with diversity. Note the
# top-k curve: $k = 2$ is valid nearly always but reaches at most 16 grids, because at the first
# position, where all 8 tokens are equally right, it keeps only 2. Top-p adapts to the shape of
# each distribution (8 tokens kept where the model is flat, 2 where it has two options, 1 where
# it is sure), which is why it keeps diversity at high validity here.

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
ax = axes[0]
for family, rows in results.items():
    xs = [d for _, _, d in rows]
    ys = [v for _, v, _ in rows]
    ax.plot(xs, ys, "o-", label=family)
    for (kw, v, d) in rows:
        ax.annotate(str(list(kw.values())[0]), (d, v), fontsize=7, xytext=(3, 3), textcoords="offset points")
ax.set_xlabel("distinct valid grids (of 64)")
ax.set_ylabel("fraction of samples valid")
ax.set_title("Fidelity against diversity")
ax.legend(fontsize=8)

# the filtered next-token distribution at two positions: the first token, and the start of row 2
with torch.no_grad():
    context = torch.tensor([[BOS] + [3] * 4])  # first row = 3s
    logits_first = prior(context[:, :1])[0, -1]  # (V + 1,)
    logits_row2 = prior(context)[0, -1]
for ax, logits, title in [(axes[1], logits_first, "first token (all 8 are right)"),
                          (axes[2], logits_row2, "start of row 2 after a row of 3s (4 or 5 are right)")]:
    logits = logits[:V]
    filters = {"tau=1": dict(), "tau=0.5": dict(temperature=0.5), "top-k=2": dict(top_k=2), "top-p=0.9": dict(top_p=0.9)}
    width = 0.2
    for i, (name, kw) in enumerate(filters.items()):
        probs = filter_logits(logits, **kw).softmax(-1)
        ax.bar(torch.arange(V) + (i - 1.5) * width, probs.numpy(), width, label=name)
    ax.set_xticks(range(V))
    ax.set_xlabel("token")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# Samples at three settings (green title: valid grid). At $\tau = 2.2$ the errors are local:
# a single wrong token inside a row, which in an image would be a visible artefact in one patch.

# %%
fig, axes = plt.subplots(3, 8, figsize=(11, 4.5))
for r, kw in enumerate([dict(temperature=1.0), dict(temperature=2.2), dict(top_k=2)]):
    _, _, grids = draw(n=8, seed=7, **kw)
    ok = is_valid(grids)
    for c in range(8):
        axes[r, c].imshow(grids[c], cmap="viridis", vmin=0, vmax=V - 1)
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
        axes[r, c].set_title("ok" if ok[c] else "broken", fontsize=7, color="green" if ok[c] else "red")
    axes[r, 0].set_ylabel(", ".join(f"{k}={v}" for k, v in kw.items()), fontsize=8)
fig.tight_layout()
plt.show()
