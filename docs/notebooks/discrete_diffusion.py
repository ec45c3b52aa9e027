# %% [markdown]
# # Discrete diffusion on tokens: mask-and-replace forward, ancestral reverse
#
# VQ-Diffusion keeps the VQ-VAE's token grid but replaces the autoregressive prior by a diffusion
# over the tokens themselves (`reference_impls.discrete_diffusion`). Its forward process
# corrupts every token independently: at step $t$ a token is kept, **replaced** by a uniformly
# chosen class, or **masked** (sent to an absorbing `[MASK]` state). In closed form,
# $q(x_t \mid x_0)$ keeps the token with probability $\bar\alpha_t + \bar\beta_t$, turns it into
# each other class with probability $\bar\beta_t$ and masks it with probability $\bar\gamma_t$.
# The reverse step mixes the exact posterior over the model's guess of $x_0$:
# $p(x_{t-1} \mid x_t) = \sum_{x_0} q(x_{t-1} \mid x_t, x_0)\, \tilde p(x_0 \mid x_t)$.
#
# The toy dataset is six 8 x 8 grids over $K = 8$ token classes. Because the dataset is finite,
# the best possible $x_0$-predictor can be written down (the posterior over the six grids given
# $x_t$), so the reverse process can be run without training anything.

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.discrete_diffusion import (mask_and_replace_schedule, q_probs, q_sample, sample,
                                                vq_diffusion_cumulative)

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
K, H, W, T = 8, 8, 8, 40
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
patterns = torch.stack([
    (yy // 2) % K,  # horizontal bands
    (xx // 2) % K,  # vertical bands
    (yy + xx) % K,  # diagonals
    ((yy // 4) * 2 + (xx // 4)) % K,  # four blocks
    ((yy // 2 + xx // 2) % 2) * 5,  # checkerboard of 2 x 2 squares
    torch.maximum((yy - 3.5).abs(), (xx - 3.5).abs()).long() + 3,  # concentric squares
])  # (6, 8, 8)
schedule = mask_and_replace_schedule(*vq_diffusion_cumulative(T), num_classes=K)
MASK = schedule.mask_index
print(f"{len(patterns)} patterns, K = {K} classes + [MASK] (index {MASK}), T = {T} steps")

# %% [markdown]
# ## Forward process
# The three probabilities of the closed form against $t$, and the empirical fractions in a
# corrupted sample (dots). Early steps mostly replace; later ones mostly mask, and at $t = T$
# almost every token is `[MASK]`.

# %%
ts = torch.arange(0, T + 1)
x0 = patterns[:1].expand(2000, H, W)  # one pattern, many draws
keep, replace, masked = [], [], []
emp_keep, emp_mask = [], []
for t in ts.tolist():
    row = q_probs(schedule, torch.zeros(1, 1, dtype=torch.long), torch.tensor([t]))[0, 0]  # q(x_t | x_0 = 0): (S,)
    keep.append(row[0].item())
    replace.append(row[1:K].sum().item())
    masked.append(row[MASK].item())
    xt = q_sample(schedule, x0[:200], torch.full((200,), t), gen)
    emp_keep.append((xt == x0[:200]).float().mean().item())
    emp_mask.append((xt == MASK).float().mean().item())
assert max(abs(a - b) for a, b in zip(keep, emp_keep)) < 0.02  # samples follow the closed form
assert masked[-1] > 0.99 and keep[0] == 1.0

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), gridspec_kw={"width_ratios": [1, 1.6]})
axes[0].plot(ts, keep, label="kept")
axes[0].plot(ts, replace, label="replaced by another class")
axes[0].plot(ts, masked, label="[MASK]")
axes[0].plot(ts, emp_keep, ".", color="C0", ms=4)
axes[0].plot(ts, emp_mask, ".", color="C2", ms=4)
axes[0].set_xlabel("t")
axes[0].set_title("q(x_t | x_0): closed form (lines), samples (dots)")
axes[0].legend(fontsize=8)
axes[1].axis("off")
snap_t = [0, 5, 10, 20, 30, 40]
for i, t in enumerate(snap_t):
    ax = fig.add_axes([0.42 + i * 0.095, 0.25, 0.085, 0.5])
    xt = q_sample(schedule, patterns[5:6], torch.tensor([t]), gen)[0].float()
    xt[xt == MASK] = float("nan")
    ax.imshow(xt, cmap="tab10", vmin=0, vmax=K - 1)
    ax.set_facecolor("black")
    ax.set_title(f"t = {t}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()


# %% [markdown]
# ## Reverse process with an exact $x_0$-predictor
# For a finite dataset, $\tilde p(x_0 \mid x_t)$ is the posterior over the six grids: each grid's
# likelihood is $\prod_i q(x_{t,i} \mid x_{0,i})$, read from $\bar Q_t$. Its per-position marginal
# is what a perfectly trained network would output. As a contrast, a "blind" predictor returns the
# per-position frequency of each class over the dataset whatever $x_t$ is: it knows the data's
# marginals but not how positions go together.

# %%
def oracle_logits(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact log p(x_0 | x_t) per position for the six-pattern dataset: (B, H, W) -> (B, H, W, K)."""
    qbar = schedule.Qbar[t].float()  # (B, S, S): q(x_t = j | x_0 = i)
    b = xt.shape[0]
    rows = patterns.reshape(1, -1, H * W).expand(b, -1, -1)  # (B, M, N) x_0 classes
    cols = xt.reshape(b, 1, H * W).expand_as(rows)  # (B, M, N) observed x_t
    lik = qbar[torch.arange(b)[:, None, None], rows, cols]  # (B, M, N)
    weights = lik.clamp_min(1e-30).log().sum(-1).softmax(-1)  # (B, M) posterior over the patterns
    onehot = torch.nn.functional.one_hot(patterns.reshape(-1, H * W), K).float()  # (M, N, K)
    marg = torch.einsum("bm,mnk->bnk", weights, onehot)  # (B, N, K)
    return marg.clamp_min(1e-12).log().reshape(b, H, W, K)


def blind_logits(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-position class frequencies of the dataset, ignoring x_t."""
    freq = torch.nn.functional.one_hot(patterns, K).float().mean(0)  # (H, W, K)
    return freq.clamp_min(1e-12).log().expand(xt.shape[0], H, W, K)


trajectory: list[torch.Tensor] = []


def recording_oracle(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    trajectory.append(xt[0].clone())  # the sampler's state x_t at each reverse step
    return oracle_logits(xt, t)


def is_pattern(x: torch.Tensor) -> torch.Tensor:
    return (x[:, None] == patterns[None]).flatten(2).all(-1).any(-1)  # (B,)


exact = sample(recording_oracle, schedule, (64, H, W), generator=torch.Generator().manual_seed(1))
blind = sample(blind_logits, schedule, (64, H, W), generator=torch.Generator().manual_seed(1))
exact_ok = is_pattern(exact.tokens).float().mean().item()
blind_ok = is_pattern(blind.tokens).float().mean().item()
print(f"model calls per sample: {exact.forward_passes} (one per step)")
print(f"samples equal to a dataset grid: exact predictor {exact_ok:.0%}, blind predictor {blind_ok:.0%}")
assert exact.forward_passes == T
assert exact_ok > 0.9 and blind_ok < 0.2
assert int((exact.tokens == MASK).sum()) == 0

# %%
fig, axes = plt.subplots(3, 8, figsize=(12, 5))
steps_shown = [0, 10, 20, 28, 33, 36, 38, 39]
for c, i in enumerate(steps_shown):
    x = trajectory[i].float()
    x[x == MASK] = float("nan")
    axes[0, c].imshow(x, cmap="tab10", vmin=0, vmax=K - 1)
    axes[0, c].set_facecolor("black")
    axes[0, c].set_title(f"x_t, t = {T - i}", fontsize=8)
for c in range(8):
    axes[1, c].imshow(exact.tokens[c], cmap="tab10", vmin=0, vmax=K - 1)
    axes[2, c].imshow(blind.tokens[c], cmap="tab10", vmin=0, vmax=K - 1)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel("one reverse\nchain", fontsize=8)
axes[1, 0].set_ylabel("exact x_0\npredictor", fontsize=8)
axes[2, 0].set_ylabel("blind x_0\npredictor", fontsize=8)
fig.suptitle("Reverse process: masks are filled in as t decreases (black = [MASK])")
fig.tight_layout()
plt.show()

# %% [markdown]
# All positions are updated in parallel at each of the $T$ steps, unlike the $H W$ sequential
# steps of an autoregressive prior, and any token can still change until $t$ reaches 0 (the
# replace part of the corruption teaches the model to correct wrong tokens). The blind predictor
# shows what the reverse process cannot do on its own: the coherence of the grid comes entirely
# from how well $\tilde p(x_0 \mid x_t)$ uses the tokens already filled in.
