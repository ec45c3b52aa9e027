# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 13  # one run on two idle cores; a fresh clone runs the longest notebooks first
# ---

# %% [markdown]
# # Residual quantisation: reconstruction error by depth
#
# A residual quantiser replaces one code per position by a stack of $D$ codes: the first code
# approximates the vector, the second approximates what is left over, and so on
# (`reference_impls.residual_vq`):
#
# $$r_0 = z, \quad k_d = \arg\min_k \lVert r_{d-1} - e_d(k) \rVert, \quad r_d = r_{d-1} - e_d(k_d),
# \quad \hat z^{(d)} = \sum_{i \le d} e_i(k_i).$$
#
# With $K$ codes per level, $D$ levels name $K^D$ different vectors for $D \log_2 K$ bits.
# RQ-VAE shares one codebook across depths; SoundStream gives each level its own and trains with
# quantizer dropout so that the first $n_q$ levels alone work at any bitrate. This notebook fits
# the variants to the same toy vectors (the data are the latents: there is no encoder or
# decoder) and measures, for every depth $d$, the error of the partial sum $\hat z^{(d)}$ and how
# many of the $K$ codes of each level are used (count and perplexity).
#
# **Training.** Every codebook starts from k-means (our choice, so that the toy measures
# converged codebooks rather than a short run from random codes): level $d$ from the residuals
# $r_{d-1}$ left by the levels before it, the shared codebook from the residuals of all depths
# pooled. Then all
# codebooks are fine-tuned together by gradient steps on the codebook and commitment losses.
# The table shows the error after k-means alone, after half the steps and after all of them.

# %% tags=["parameters"]
SEEDS = [0, 1, 2]  # 3 to 10 seeds (data, k-means starts and batches are drawn from each)
STEPS = 200  # gradient steps after the k-means start, 100 to 300
K = 16  # codes per level, 8 to 24
DEPTH = 8  # levels, 4 to 8

# %%
import math

import matplotlib.pyplot as plt
import torch

from reference_impls.ar_prior import kmeans
from reference_impls.residual_vq import ResidualVQ, residual_quantize
from reference_impls.vq import perplexity

torch.set_num_threads(1)
assert len(SEEDS) >= 3 and 100 <= STEPS <= 300 and 8 <= K <= 24 and 4 <= DEPTH <= 8
DIM, N = 8, 4096


def make_data(seed: int) -> torch.Tensor:
    """(4096, 8) correlated, anisotropic Gaussian vectors."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(DIM, DIM, generator=gen) * torch.linspace(1.5, 0.2, DIM)
    return torch.randn(N, DIM, generator=gen) @ mixing.T


def kmeans_start(rvq: ResidualVQ, data: torch.Tensor, gen: torch.Generator) -> None:
    """Level-by-level k-means on the residuals; a shared codebook from all residuals pooled."""
    residual, pooled = data, []
    books = []
    for _ in range(rvq.depth):
        pooled.append(residual)
        centroids, labels = kmeans(residual, rvq.num_codes, n_iters=15, generator=gen)
        books.append(centroids)
        residual = residual - centroids[labels]
    with torch.no_grad():
        if rvq.shared_codebook:
            rvq.codebook[0] = kmeans(
                torch.cat(pooled)[torch.randperm(N * rvq.depth, generator=gen)[:N]],
                rvq.num_codes,
                n_iters=15,
                generator=gen,
            )[0]
        else:
            rvq.codebook.copy_(torch.stack(books))


@torch.no_grad()
def evaluate(rvq: ResidualVQ, data: torch.Tensor) -> dict[str, list[float]]:
    """Per depth d: mean squared error ||z - z_hat^(d)||^2 (summed over dimensions), codes used, perplexity."""
    books = rvq.codebooks(rvq.depth)
    idx, codes = residual_quantize(data, books)  # (N, D)
    partial = torch.cumsum(torch.stack(codes), 0)  # (D, N, C)
    return {
        "error": ((partial - data) ** 2).sum(-1).mean(-1).tolist(),
        "used": [idx[:, d].unique().numel() for d in range(rvq.depth)],
        "perplexity": [perplexity(idx[:, d], rvq.num_codes).item() for d in range(rvq.depth)],
    }


def fit(rvq: ResidualVQ, data: torch.Tensor, seed: int) -> list[dict]:
    """k-means start, then STEPS Adam steps; returns the evaluation after 0, STEPS // 2 and STEPS steps."""
    gen = torch.Generator().manual_seed(seed)
    kmeans_start(rvq, data, gen)
    evals = [evaluate(rvq, data)]
    opt = torch.optim.Adam(rvq.parameters(), lr=3e-3)
    rvq.train()
    for step in range(1, STEPS + 1):
        x = data[torch.randint(0, N, (256,), generator=gen)][:, :, None]  # (256, 8, 1)
        out = rvq(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if step in (STEPS // 2, STEPS):
            evals.append(evaluate(rvq.eval(), data))
            rvq.train()
    return evals


VARIANTS = {
    "one codebook per level": dict(shared_codebook=False),
    "shared codebook": dict(shared_codebook=True),
    "per level + quantizer dropout": dict(shared_codebook=False, quantizer_dropout=True),
}
results = {name: [] for name in VARIANTS}
flat, total_var = [], []
for seed in SEEDS:
    data = make_data(seed)
    total_var.append(data.var(0).sum().item())
    for name, kw in VARIANTS.items():
        rvq = ResidualVQ(K, DIM, DEPTH, generator=torch.Generator().manual_seed(seed), **kw)
        results[name].append(fit(rvq, data, seed))
    # one flat codebook with the bits of two levels: K^2 codes, the same k-means start and steps
    flat.append(
        fit(ResidualVQ(K * K, DIM, 1, generator=torch.Generator().manual_seed(seed)), data, seed)[-1]["error"][0]
    )


def per_depth(name: str, key: str, stage: int = -1) -> torch.Tensor:
    """(seeds, DEPTH) values of one variant at one stage (0: k-means only, 1: STEPS // 2, 2: STEPS)."""
    return torch.tensor([r[stage][key] for r in results[name]], dtype=torch.float32)


print(f"seeds {SEEDS}: mean +- std; total variance of the data {torch.tensor(total_var).mean():.2f}; K = {K}")
for name in VARIANTS:
    print(f"\n{name}")
    print("  depth                      " + "".join(f"{d:>12d}" for d in range(1, DEPTH + 1)))
    for stage, label in [(0, "error, k-means start"), (1, f"error, {STEPS // 2} steps"), (2, f"error, {STEPS} steps")]:
        e = per_depth(name, "error", stage)
        print(f"  {label:26s}" + "".join(f" {m:5.2f}+-{s:4.2f}" for m, s in zip(e.mean(0), e.std(0), strict=True)))
    for key in ("used", "perplexity"):
        v = per_depth(name, key)
        print(
            f"  {key + ' (of ' + str(K) + ')':26s}"
            + "".join(f" {m:5.1f}+-{s:4.1f}" for m, s in zip(v.mean(0), v.std(0), strict=True))
        )
flat_t = torch.tensor(flat)
two = per_depth("one codebook per level", "error")[:, 1]
print(
    f"\nflat codebook of {K * K} codes ({2 * math.log2(K):.0f} bits): {flat_t.mean():.2f} +- {flat_t.std():.2f}; "
    f"two levels of {K}: {two.mean():.2f} +- {two.std():.2f}"
)

# %% [markdown]
# ## What holds over the seeds
# * With a codebook per level, every added level lowers the error, on every seed, and every level
#   uses all or nearly all of its $K$ codes (the usage and perplexity rows).
# * For per-level codebooks the gradient steps after the k-means start barely change the error
#   (printed above the asserts: in trials with seeds 20-24 and 101-105 by 0.5 % to 2.5 % on
#   average over depths and seeds, at most 3 % with $K = 8$ and 11 % with $K = 24$ codes at 300
#   steps): the k-means start already puts the levels near where training leaves them, so the toy
#   measures k-means codebooks.
# * A shared codebook ends with a higher full-depth error than per-level codebooks on every seed,
#   and the ratio of the two errors grows with depth (printed above the asserts); its deep levels
#   use fewer codes (lower perplexity): one set of $K$ vectors must serve residuals whose scale
#   shrinks with depth. The gradient steps move its error more than they move the per-level
#   errors (compare its three error rows), without closing the gap.
# * Quantizer dropout therefore compares two nearly identical codebooks: both start from the same
#   k-means codebooks and the gradient steps hardly move either, so their errors agree to within
#   a few percent at every depth (printed above the asserts; at most 1.4 % with $K = 8$ and 3.5 %
#   with $K = 24$ in the trials above). The toy cannot measure what dropout does. Its
#   benefit in SoundStream (one codec trained for every bitrate at once) needs an encoder and a
#   decoder trained through the quantiser, which this toy leaves out.
# * One flat codebook of $K^2$ codes, the bits of two levels, has a lower error than two levels
#   on every seed (last line), as it is free to place all $K^2$ points; its size grows as $K^D$
#   while the residual stack grows as $K D$.

# %%
per_level = per_depth("one codebook per level", "error")
shared = per_depth("shared codebook", "error")
dropout = per_depth("per level + quantizer dropout", "error")
assert (per_level[:, 1:] < per_level[:, :-1]).all()  # every level helps, every seed
assert (per_depth("one codebook per level", "used") >= K - 2).all()
start = per_depth("one codebook per level", "error", 0)
moved = ((per_level - start) / start).abs()  # (seeds, DEPTH) relative change from the gradient steps
gap = ((dropout - per_level) / per_level).abs()
print(
    f"gradient steps after the k-means start change the per-level errors by at most {moved.max():.1%} "
    f"(mean {moved.mean():.1%}); with and without quantizer dropout the errors differ by at most {gap.max():.1%}"
)
assert (moved < 0.15).all() and moved.mean() < 0.05  # the gradient steps leave the k-means codebooks nearly as they are
ratio = shared / per_level
print("error of the shared codebook / per-level codebooks, by depth:", " ".join(f"{r:.1f}" for r in ratio.mean(0)))
assert (shared[:, -1] > 1.2 * per_level[:, -1]).all() and (ratio[:, -1] > ratio[:, 0]).all()
assert (
    per_depth("shared codebook", "perplexity")[:, -1] < per_depth("one codebook per level", "perplexity")[:, -1]
).all()
assert (gap < 0.05).all()  # dropout or not, nearly the same codebooks
assert (flat_t < two).all()

# %% [markdown]
# ## Error against depth (and bits)
# Mean over seeds, with the range over seeds as a band; each level costs $\log_2 K$ bits per
# position. Right: codes used per level (of $K$).

# %%
bits_per_level = math.log2(K)
bits = [bits_per_level * d for d in range(1, DEPTH + 1)]
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
for c, name in enumerate(VARIANTS):
    e = per_depth(name, "error")
    a0.plot(bits, e.mean(0), "o-", color=f"C{c}", label=name)
    a0.fill_between(bits, e.min(0).values, e.max(0).values, color=f"C{c}", alpha=0.2)
    u = per_depth(name, "used")
    a1.plot(range(1, DEPTH + 1), u.mean(0), "o-", color=f"C{c}", label=name)
a0.errorbar(
    [2 * bits_per_level], [flat_t.mean()], yerr=[flat_t.std()], fmt="k*", ms=12, label=f"flat codebook, {K * K} codes"
)
a0.axhline(torch.tensor(total_var).mean(), color="gray", ls=":", lw=1, label="error of predicting 0")
a0.set_yscale("log")
a0.set_xlabel(f"bits per position ({bits_per_level:.1f} per level)")
a0.set_ylabel("mean squared error")
a0.set_title("Reconstruction error of the partial sums")
a0.legend(fontsize=7)
a1.axhline(K, color="gray", ls=":", lw=1)
a1.set_ylim(0, K + 1)
a1.set_xlabel("level")
a1.set_title(f"codes used per level (of {K})")
fig.tight_layout()
plt.show()

# %% [markdown]
# What this means for a token prior: each position now carries $D$ tokens rather than one, so
# the sequence for an autoregressive prior is $D$ times longer unless the prior is built for
# stacks (RQ-VAE's RQ-Transformer predicts the $D$ codes of a position with a small second
# transformer). Whether quantizer dropout pays for its cost in a real codec cannot be measured
# without an encoder and decoder, which this toy leaves out.
