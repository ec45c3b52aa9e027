# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 6  # one run on two idle cores; a fresh clone runs the longest notebooks first
# ---

# %% [markdown]
# # Discrete diffusion on tokens: mask-and-replace forward, ancestral reverse
#
# VQ-Diffusion [@gu2022vector] keeps the VQ-VAE's token grid but replaces the autoregressive prior
# by a diffusion over the tokens themselves (`reference_impls.discrete_diffusion`). Its forward
# process corrupts every token independently: at step $t$ a token is kept, **replaced** by a
# uniformly chosen class, or **masked** (sent to an absorbing `[MASK]` state). In closed form,
# $q(x_t \mid x_0)$ keeps the token with probability $\bar\alpha_t + \bar\beta_t$, turns it into
# each other class with probability $\bar\beta_t$ and masks it with probability $\bar\gamma_t$,
# where $\bar\beta_t = (1 - \bar\alpha_t - \bar\gamma_t) / K$. The reverse step mixes the exact
# posterior over the model's guess of $x_0$:
# $p(x_{t-1} \mid x_t) = \sum_{x_0} q(x_{t-1} \mid x_t, x_0)\, \tilde p(x_0 \mid x_t)$.
#
# **Which schedule.** The paper presents the replace part as its answer to accumulated errors:
# a token already filled in may be wrong, so the network must learn to doubt it. The released
# code (microsoft/VQ-Diffusion, `image_synthesis/modeling/transformers/diffusion_transformer.py`,
# `alpha_schedule`, selected by `alpha_init_type: 'alpha1'` in its configs, e.g. `configs/ithq.yaml`)
# moves $\bar\alpha_t$ linearly from 0.99999 to 0.000009 and $\bar\gamma_t$ from 0.000009 to
# 0.99999. Both lines have the same sum, $0.999999$, at every $t$, so $K\bar\beta_t = 10^{-6}$
# throughout: **the released default never replaces**, it only masks. `vq_diffusion_cumulative`
# follows the released code at its defaults. The notebook compares it with a schedule of our own
# choosing that does replace: the same lines, but $\bar\gamma_t$ ends at $1 - $ `REPLACE_MAX`, so
# the probability that a token shows a wrong class rises to about `REPLACE_MAX` at $t = T$.
#
# **The toy.** The data distribution is uniform over 48 8 x 8 grids of $K = 8$ classes (six
# patterns, each in its 8 cyclic colour shifts). Because the distribution is known and finite,
# the best possible $x_0$-predictor can be written down (the posterior over the 48 grids given
# $x_t$), so the reverse process runs without training anything, and samples can be compared
# with the data distribution itself.

# %% tags=["parameters"]
SEEDS = [0, 1, 2]  # 3 to 10 seeds; every comparison below is reported over all of them
T = 40  # diffusion steps, 20 to 50
N_SAMPLES = 64  # samples per seed and sampler, 32 to 96
REPLACE_MAX = 0.1  # replacement probability reached at t = T by the replacing schedule, 0.05 to 0.3

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from reference_impls.discrete_diffusion import (
    mask_and_replace_schedule,
    model_x0_probs,
    p_reverse_probs,
    q_probs,
    q_sample,
    sample_categorical,
    vq_diffusion_cumulative,
)

torch.set_num_threads(1)
assert len(SEEDS) >= 3 and 20 <= T <= 50 and 32 <= N_SAMPLES <= 96 and 0.05 <= REPLACE_MAX <= 0.3
K, H, W = 8, 8, 8
MASK = K
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
patterns = torch.stack(
    [
        (yy // 2) % K,  # horizontal bands
        (xx // 2) % K,  # vertical bands
        (yy + xx) % K,  # diagonals
        ((yy // 4) * 2 + (xx // 4)) % K,  # four blocks
        ((yy // 2 + xx // 2) % 2) * 5,  # checkerboard of 2 x 2 squares
        torch.maximum((yy - 3.5).abs(), (xx - 3.5).abs()).long() + 3,  # concentric squares
    ]
)  # (6, 8, 8)
support = torch.cat([(patterns + c) % K for c in range(K)])  # (48, 8, 8): the data distribution is uniform on these
M = len(support)
assert len({tuple(g.flatten().tolist()) for g in support}) == M  # 48 distinct grids

schedules = {
    "released default (mask only)": mask_and_replace_schedule(*vq_diffusion_cumulative(T), num_classes=K),
    "mask and replace": mask_and_replace_schedule(
        *vq_diffusion_cumulative(T, gamma_bar_last=1 - REPLACE_MAX), num_classes=K
    ),
}
print(f"data: uniform over {M} grids; K = {K} classes + [MASK]; T = {T}; seeds {SEEDS}")

# %% [markdown]
# ## Forward process: how often a token is replaced
# Lines: the closed form of $q(x_t \mid x_0)$ for both schedules (kept, shown as a wrong class,
# masked). Dots: the fractions measured on corrupted data, mean over the seeds (the error bars,
# the spread over seeds, are smaller than the dots). Under the released default the "wrong class"
# curve stays at $10^{-6}$; under the replacing schedule a token is shown with a wrong class up
# to `REPLACE_MAX` of the time.

# %%
ts = torch.arange(0, T + 1)
closed, measured = {}, {}
for name, s in schedules.items():
    rows = q_probs(s, torch.zeros(T + 1, 1, dtype=torch.long), ts)[:, 0]  # q(x_t | x_0 = 0): (T + 1, S)
    closed[name] = {"kept": rows[:, 0], "wrong": rows[:, 1:K].sum(-1), "masked": rows[:, MASK]}
    per_seed = []
    for seed in SEEDS:
        gen = torch.Generator().manual_seed(seed)
        x0 = support[torch.randint(0, M, (16,), generator=gen)]  # (16, 8, 8)
        frac = []
        for t in ts.tolist():
            xt = q_sample(s, x0, torch.full((16,), t), gen)
            frac.append(
                [(xt == x0).float().mean(), ((xt != x0) & (xt != MASK)).float().mean(), (xt == MASK).float().mean()]
            )
        per_seed.append(torch.tensor(frac))  # (T + 1, 3)
    measured[name] = torch.stack(per_seed)  # (seeds, T + 1, 3)
    wrong_max = closed[name]["wrong"].max().item()
    masked_last = closed[name]["masked"][-1]
    print(f"{name:30s} largest probability of a wrong class {wrong_max:.2e}; masked at t = T {masked_last:.5f}")
    # the samples follow the closed form at every t, on every seed (1024 tokens per point)
    assert (measured[name][:, :, 0] - closed[name]["kept"].float()).abs().max() < 0.06

released, replacing = schedules.values()
assert closed["released default (mask only)"]["wrong"].max() < 1e-5  # the released default only masks
# replacement reaches REPLACE_MAX
assert abs(closed["mask and replace"]["wrong"][-1] - REPLACE_MAX * (K - 1) / K) < 1e-3
assert measured["mask and replace"][:, -1, 1].min() > 0.5 * REPLACE_MAX  # and is seen in the samples on every seed

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), sharey=True)
for ax, (name, c) in zip(axes, closed.items(), strict=True):
    for j, key in enumerate(["kept", "wrong", "masked"]):
        ax.plot(
            ts,
            c[key],
            color=f"C{j}",
            label={"kept": "kept", "wrong": "wrong class (replaced)", "masked": "[MASK]"}[key],
        )
        m = measured[name][:, :, j]
        ax.errorbar(ts, m.mean(0), yerr=m.std(0), fmt=".", color=f"C{j}", ms=3, lw=0.5)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("t")
axes[0].legend(fontsize=8)
fig.suptitle("q(x_t | x_0): closed form (lines) and samples (dots, mean and spread over seeds)")
fig.tight_layout()
plt.show()


# %% [markdown]
# ## Reverse process with an exact $x_0$-predictor
# For a known finite distribution, $\tilde p(x_0 \mid x_t)$ is the posterior over the 48 grids:
# each grid's likelihood is $\prod_i q(x_{t,i} \mid x_{0,i})$, read from $\bar Q_t$. Its
# per-position marginal is what a perfectly trained network would output. As a contrast, a
# "blind" predictor returns the per-position class frequencies of the data whatever $x_t$ is: it
# knows the data's marginals but not how positions go together. The chain below is the module's
# ancestral step (`p_reverse_probs`, the paper's mixture of posteriors), written out so that it
# can start at any $t$ and count **revisions**: a position that already shows a class and
# changes it at a later step.


# %%
def exact_predictor(s):
    """Exact log p(x_0 | x_t) per position under schedule s: (B, H, W) tokens, (B,) times -> (B, H, W, K)."""
    onehot = F.one_hot(support.reshape(M, -1), K).float()  # (M, N, K)

    def logits(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        qbar = s.Qbar[t].float()  # (B, S, S): q(x_t = j | x_0 = i)
        b = xt.shape[0]
        rows = support.reshape(1, M, H * W).expand(b, -1, -1)  # (B, M, N) x_0 classes
        cols = xt.reshape(b, 1, H * W).expand_as(rows)  # (B, M, N) observed x_t
        lik = qbar[torch.arange(b)[:, None, None], rows, cols]  # (B, M, N)
        weights = lik.clamp_min(1e-30).log().sum(-1).softmax(-1)  # (B, M) posterior over the grids
        return torch.einsum("bm,mnk->bnk", weights, onehot).clamp_min(1e-12).log().reshape(b, H, W, K)

    return logits


def blind_predictor(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    freq = F.one_hot(support, K).float().mean(0)  # (H, W, K)
    return freq.clamp_min(1e-12).log().expand(xt.shape[0], H, W, K)


def reverse_chain(s, model, x: torch.Tensor, t_start: int, gen: torch.Generator, record: list | None = None):
    """x_{t_start} -> x_0 by ancestral steps; returns (x_0, revisions per sample (B,))."""
    revisions = torch.zeros(x.shape[0])
    for step in range(t_start, 0, -1):
        if record is not None:
            record.append(x[0].clone())
        t = torch.full((x.shape[0],), step)
        _, p0 = model_x0_probs(s, model, x, t)  # one model call per step
        new = sample_categorical(p_reverse_probs(s, p0, x, t), gen)
        revisions += ((x != MASK) & (new != x)).flatten(1).sum(1)
        x = new
    return x, revisions


def in_support(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    eq = (x[:, None] == support[None]).flatten(2).all(-1)  # (B, M)
    return eq.any(-1), eq.float().argmax(-1)


def tv_to_data(x: torch.Tensor) -> float:
    """Total variation between the samples' empirical distribution and the uniform data distribution."""
    ok, idx = in_support(x)
    hist = torch.bincount(idx[ok], minlength=M).float() / len(x)
    return 0.5 * ((hist - 1 / M).abs().sum() + (1 - ok.float().mean())).item()


data_marginals = F.one_hot(support, K).float().mean(0)  # (H, W, K)


def marginal_tv(x: torch.Tensor) -> float:
    """Mean over positions of the total variation between sampled and data class frequencies."""
    return 0.5 * (F.one_hot(x, K).float().mean(0) - data_marginals).abs().sum(-1).mean().item()


rows = []  # (seed, schedule, predictor, valid, tv, marginal tv, revisions)
chains = {}
for seed in SEEDS:
    gen = torch.Generator().manual_seed(seed)
    reference = support[torch.randint(0, M, (N_SAMPLES,), generator=gen)]  # as many draws from the data itself
    rows.append((seed, "data itself", "", 1.0, tv_to_data(reference), marginal_tv(reference), 0.0))
    for name, s in schedules.items():
        for pname, model in [("exact", exact_predictor(s)), ("blind", blind_predictor)]:
            x_T = sample_categorical(s.prior().expand(N_SAMPLES, H, W, s.num_states), gen)
            record = [] if (seed == SEEDS[0] and pname == "exact") else None
            x0, rev = reverse_chain(s, model, x_T, T, gen, record)
            if record is not None:
                chains[name] = record + [x0[0]]
            rows.append(
                (
                    seed,
                    name,
                    pname,
                    in_support(x0)[0].float().mean().item(),
                    tv_to_data(x0),
                    marginal_tv(x0),
                    rev.mean().item(),
                )
            )


def stat(schedule: str, predictor: str, col: int) -> torch.Tensor:
    return torch.tensor([r[col] for r in rows if r[1] == schedule and r[2] == predictor])


print(f"{N_SAMPLES} samples per seed; mean +- std over {len(SEEDS)} seeds")
print(f"{'sampler':44s} {'in the data':>13s} {'TV to data':>13s} {'marginal TV':>13s} {'revisions':>12s}")
for key in [("data itself", "")] + [(n, p) for n in schedules for p in ("exact", "blind")]:
    cells = [stat(*key, c) for c in (3, 4, 5, 6)]
    print(f"{(key[0] + ', ' + key[1]).strip(', '):44s}" + "".join(f" {v.mean():6.2f} +-{v.std():5.2f}" for v in cells))

# %%
tv_data = stat("data itself", "", 4)
for name in schedules:
    # the exact predictor samples the data distribution: every sample is one of the 48 grids, and
    # its distance to the data distribution is that of an equally large sample of the data itself
    assert stat(name, "exact", 3).min() >= 0.9
    assert stat(name, "exact", 4).mean() < tv_data.mean() + 3 * tv_data.std() + 0.05
    # the blind predictor gets the per-position frequencies roughly right but no grid
    assert stat(name, "blind", 3).max() < 0.2
# the replacing schedule revises tokens it has already shown, the released default almost never does
assert stat("mask and replace", "exact", 6).min() > 3 * stat("released default (mask only)", "exact", 6).max()

# %% [markdown]
# Rows of the table: the share of samples that are one of the 48 grids, the total variation
# between the samples' distribution and the uniform data distribution (an equally large sample of
# the data itself scores the same: the number is sampling noise at this sample size), the same
# for the per-position class frequencies, and revisions per sample. With the exact predictor both
# schedules sample the data distribution; the blind predictor produces no grid at all. The
# schedules differ in how the chain gets there, shown below for one chain of each (black =
# `[MASK]`, red frame = a position whose class will still change): with replacement the chain
# shows classes early and revises many of them; under the released default, with the exact
# predictor, a class once shown almost always stays (the revisions column).

# %%
fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
shown_t = sorted({round(T - i * (T - 1) / 7) for i in range(8)}, reverse=True)[:7] + [0]
for r, (name, chain) in enumerate(chains.items()):
    final = chain[-1]
    for c, t in enumerate(shown_t):
        x = chain[T - t].float()  # chain[i] is x_{T - i}
        changes = (chain[T - t] != MASK) & (chain[T - t] != final)
        x[x == MASK] = float("nan")
        ax = axes[r, c]
        ax.imshow(x, cmap="tab10", vmin=0, vmax=K - 1)
        ax.set_facecolor("black")
        for i, j in changes.nonzero().tolist():
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1))
        ax.set_title(f"t = {t}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[r, 0].set_ylabel(name.replace(" (", "\n("), fontsize=8)
fig.suptitle("One reverse chain per schedule, exact predictor (red frame: shown now, changed later)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Correcting a wrong token
# Does replacement let the reverse process repair an error? Start both chains at $t = T/2$ from
# data grids that are half masked and in which 10 % of the visible tokens were set to a wrong
# class, and count how many of those wrong tokens are right at $t = 0$.

# %%
fixed = {name: [] for name in schedules}
for seed in SEEDS:
    gen = torch.Generator().manual_seed(100 + seed)
    x0 = support[torch.randint(0, M, (N_SAMPLES,), generator=gen)]
    t_mid = T // 2
    xt = q_sample(released, x0, torch.full((N_SAMPLES,), t_mid), gen)  # masks only
    wrong = (xt != MASK) & (torch.rand(xt.shape, generator=gen) < 0.1)
    xt = torch.where(wrong, (x0 + torch.randint(1, K, xt.shape, generator=gen)) % K, xt)
    for name, s in schedules.items():
        out, _ = reverse_chain(s, exact_predictor(s), xt.clone(), t_mid, gen)
        fixed[name].append((out[wrong] == x0[wrong]).float().mean().item())
for name, f in fixed.items():
    f = torch.tensor(f)
    print(f"{name:30s} wrong tokens repaired: {f.mean():.1%} +- {f.std():.1%} over {len(SEEDS)} seeds")
    assert f.min() > 0.9

# %% [markdown]
# Both schedules repair nearly every wrong token here, and that is the limit of this toy: the
# exact predictor knows the forward process, in which a wrong visible class has probability
# below $10^{-6}$ under the released default but not zero, and it knows the 48 grids, so the rest of
# the grid tells it which class is right. What replacement changes for a **trained** network is
# its training data: under the replacing schedule it sees wrong visible classes in up to
# `REPLACE_MAX` of the tokens and must learn to overrule them; under the released default it
# almost never does (probability below $10^{-6}$ per token), so nothing teaches it to doubt a shown
# token. Whether a network trained that way still repairs errors cannot be shown without
# training one, which this notebook does not do. All positions are updated in parallel at each
# of the $T$ steps, unlike the $H W$ sequential steps of an autoregressive prior.
