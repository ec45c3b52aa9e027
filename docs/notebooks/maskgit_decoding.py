# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 5  # one run on two idle cores; a fresh clone runs the longest notebooks first
# ---

# %% [markdown]
# # Which tokens MaskGIT fixes at each decoding step
#
# MaskGIT generates a token grid in $T$ parallel steps instead of one token at a time
# (`reference_impls.maskgit`). It starts from a canvas of `[MASK]` tokens; at every step the
# bidirectional model predicts all masked positions at once, a token is sampled at each, and
# only the most confident ones are kept. The **mask schedule** $\gamma$ decides how many stay
# masked after step $t$: $n_t = \lceil \gamma(t/T) N \rceil$ with the cosine schedule
# $\gamma(r) = \cos(\pi r / 2)$. Confidence is the log-probability of the sampled token plus
# Gumbel noise scaled by a "choice temperature" that anneals to zero over the steps.
#
# Here a toy stands in for the trained transformer, so that the decoding itself can be watched:
# a `logits_fn` that knows an 8 x 8 target pattern and grows more confident at a position the
# more of its four neighbours are already fixed (as a real model gains certainty from context),
# with a fixed preference for the centre of the grid.

# %% tags=["parameters"]
SEEDS = [0, 1, 2]  # 3 to 10 seeds, each a batch of decodes
N_PER_SEED = 100  # decodes per seed, 50 to 200
STEPS = 8  # decoding steps T, 6 to 12
CHOICE_TEMPERATURE = 4.5  # MaskGIT's choice temperature at the first step, 2 to 8

# %%
import math
from itertools import pairwise

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from reference_impls.maskgit import cosine_schedule, decode, schedule_counts

torch.set_num_threads(1)
assert len(SEEDS) >= 3 and 50 <= N_PER_SEED <= 200 and 6 <= STEPS <= 12 and 2 <= CHOICE_TEMPERATURE <= 8
H = W = 8
N, K = H * W, 8
MASK = K
yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
target = ((yy // 2 + xx // 2) % K).reshape(1, N)  # (1, 64): a diagonal stripe pattern
centre_bias = 1.5 * torch.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8.0).reshape(1, N)  # (1, 64)


def toy_logits(tokens: torch.Tensor, step: int) -> torch.Tensor:
    """(B, 64) tokens with [MASK] -> (B, 64, K) logits: the target token gets a bonus that grows
    with the number of known 4-neighbours."""
    known = (tokens != MASK).float().reshape(-1, 1, H, W)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    neighbours = F.conv2d(known, kernel, padding=1).reshape(-1, N)  # (B, 64)
    strength = 0.3 + centre_bias + 0.8 * neighbours  # (B, 64)
    return F.one_hot(target.expand(tokens.shape[0], N), K).float() * strength[..., None]


# %% [markdown]
# ## The schedule: how many tokens are fixed at each step
# With $N = 64$ tokens and $T$ = `STEPS` steps the cosine schedule fixes few tokens first, when the
# model has no context, and many at the end. A linear schedule $\gamma(r) = 1 - r$ fixes the
# same number every step.

# %%
cos_counts = schedule_counts(N, STEPS, cosine_schedule)
lin_counts = schedule_counts(N, STEPS, lambda r: 1 - r)
cos_fixed = [a - b for a, b in pairwise([N] + cos_counts)]
lin_fixed = [a - b for a, b in pairwise([N] + lin_counts)]
print("still masked after each step (cosine):", cos_counts)
print("fixed at each step (cosine):         ", cos_fixed)
print("fixed at each step (linear):         ", lin_fixed)
assert cos_counts[-1] == 0 and sum(cos_fixed) == N
assert all(b <= a for a, b in pairwise(cos_counts))
assert cos_fixed[0] < cos_fixed[-1]  # the cosine schedule is slow first, fast last
# n_t = ceil(cos(pi t / 2T) N), clipped so that every step fixes at least one token
expected, prev = [], N
for t in range(1, STEPS + 1):
    prev = min(math.ceil(math.cos(math.pi / 2 * t / STEPS) * N - 1e-9), prev - 1)
    expected.append(max(prev, 0))
assert cos_counts == expected


# %% [markdown]
# ## Decoding the toy grid
# `decode` records the mask after every step (`history`), so the step at which each position was
# fixed can be read off. With choice temperature 0 the order is pure confidence: the centre
# first, then outward, as neighbours become known. With MaskGIT's annealed noise
# (`CHOICE_TEMPERATURE`, 4.5 by default here) the
# first tokens land anywhere on the grid. The maps below are one decode each; the measurements
# after them are over all seeds.


# %%
def fix_steps(choice_temperature: float, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    history: list[torch.Tensor] = []
    canvas = torch.full((1, N), MASK)
    out = decode(
        toy_logits,
        canvas,
        torch.ones(1, N, dtype=torch.bool),
        MASK,
        STEPS,
        generator=torch.Generator().manual_seed(seed),
        temperature=0.7,
        choice_temperature=choice_temperature,
        history=history,
    )
    still_masked = torch.stack([h[0] for h in history])  # (T, 64)
    step_fixed = still_masked.long().sum(0) + 1  # masked after steps 1..s-1, fixed at step s
    return step_fixed.reshape(H, W), history, out


greedy_steps, greedy_hist, greedy_out = fix_steps(0.0)
noisy_steps, noisy_hist, noisy_out = fix_steps(CHOICE_TEMPERATURE)
per_step = torch.bincount(greedy_steps.flatten(), minlength=STEPS + 1)[1:]
print("tokens fixed per step in the run:", per_step.tolist())
assert per_step.tolist() == cos_fixed  # decode follows the schedule exactly
first = greedy_steps.flatten() == 1
assert centre_bias[0, first].mean() > centre_bias.mean()  # confidence order starts at the centre

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
x = torch.arange(1, STEPS + 1)
axes[0].bar(x - 0.2, cos_fixed, 0.4, label="cosine")
axes[0].bar(x + 0.2, lin_fixed, 0.4, label="linear")
axes[0].set_xlabel("step t")
axes[0].set_ylabel("tokens fixed at step t")
axes[0].set_title(f"Schedule, N = {N}, T = {STEPS}")
axes[0].legend()
for ax, steps_map, title in [
    (axes[1], greedy_steps, "step at which each token is fixed\n(choice temperature 0)"),
    (axes[2], noisy_steps, f"step at which each token is fixed\n(choice temperature {CHOICE_TEMPERATURE})"),
]:
    im = ax.imshow(steps_map, cmap="magma_r", vmin=1, vmax=STEPS)
    for i in range(H):
        for j in range(W):
            ax.text(j, i, int(steps_map[i, j]), ha="center", va="center", fontsize=7, color="cyan")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes[1:], shrink=0.8, label="step")
plt.show()

# %% [markdown]
# The canvas after each step of the noisy run: grey cells are still `[MASK]`.

# %%
fig, axes = plt.subplots(1, STEPS, figsize=(13, 2))
for t in range(STEPS):
    shown = noisy_out[0].float().clone()
    shown[noisy_hist[t][0]] = float("nan")
    axes[t].imshow(shown.reshape(H, W), cmap="viridis", vmin=0, vmax=K - 1)
    axes[t].set_facecolor("lightgray")
    axes[t].set_title(f"after step {t + 1}\n{int(noisy_hist[t][0].sum())} masked", fontsize=8)
    axes[t].set_xticks([])
    axes[t].set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Over many decodes: where the first tokens land, and what the noise costs
# For each seed, `N_PER_SEED` decodes with and without the choice noise. Two measurements: the
# mean distance from the grid's centre of the tokens fixed at the first step (the toy model is
# most confident at the centre), and the share of all tokens equal to the target pattern.


# %%
def many(choice_temperature: float, seed: int) -> tuple[float, float]:
    history: list[torch.Tensor] = []
    canvas = torch.full((N_PER_SEED, N), MASK)
    out = decode(
        toy_logits,
        canvas,
        torch.ones(N_PER_SEED, N, dtype=torch.bool),
        MASK,
        STEPS,
        generator=torch.Generator().manual_seed(seed),
        temperature=0.7,
        choice_temperature=choice_temperature,
        history=history,
    )
    first = ~history[0]  # (B, N): fixed at step 1
    dist = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).sqrt().reshape(1, N).expand_as(first)
    return dist[first].mean().item(), (out == target).float().mean().item()


stats = {c: torch.tensor([many(c, seed) for seed in SEEDS]) for c in (0.0, CHOICE_TEMPERATURE)}  # (seeds, 2)
for c, v in stats.items():
    print(
        f"choice temperature {c}: first-step tokens at {v[:, 0].mean():.2f} +- {v[:, 0].std():.2f} cells "
        f"from the centre; tokens equal to the target {v[:, 1].mean():.1%} +- {v[:, 1].std():.1%}"
    )
all_cells = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).sqrt().mean().item()
print(f"(mean distance of all 64 cells from the centre: {all_cells:.2f})")
greedy, noisy = stats[0.0], stats[CHOICE_TEMPERATURE]
assert (noisy[:, 0] > greedy[:, 0]).all()  # the noise spreads the first tokens away from the centre, every seed
assert (noisy[:, 1] < greedy[:, 1]).all()  # and in this toy it lowers agreement with the target, every seed

# %% [markdown]
# On every seed the noise moves the first tokens away from the centre, toward the spread of the
# whole grid, and lowers the share of tokens equal to the target. In this toy spreading is pure
# cost: the stand-in model has one right answer and gains nothing from seeing distant context
# early. The paper adds the noise for sample diversity and quality on real images; a toy with a
# single target cannot show that benefit.
