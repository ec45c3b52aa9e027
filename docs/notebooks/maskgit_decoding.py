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

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from reference_impls.maskgit import cosine_schedule, decode, schedule_counts

torch.set_num_threads(1)
H = W = 8
N, K, STEPS = H * W, 8, 8
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
# With $N = 64$ tokens and $T = 8$ steps the cosine schedule fixes few tokens first, when the
# model has no context, and many at the end. A linear schedule $\gamma(r) = 1 - r$ fixes the
# same number every step.

# %%
cos_counts = schedule_counts(N, STEPS, cosine_schedule)
lin_counts = schedule_counts(N, STEPS, lambda r: 1 - r)
cos_fixed = [a - b for a, b in zip([N] + cos_counts, cos_counts)]
lin_fixed = [a - b for a, b in zip([N] + lin_counts, lin_counts)]
print("still masked after each step (cosine):", cos_counts)
print("fixed at each step (cosine):         ", cos_fixed)
print("fixed at each step (linear):         ", lin_fixed)
assert cos_counts[-1] == 0 and sum(cos_fixed) == N
assert all(b <= a for a, b in zip(cos_counts, cos_counts[1:]))
assert cos_fixed[0] < cos_fixed[-1]  # the cosine schedule is slow first, fast last
assert cos_counts == [math.ceil(math.cos(math.pi / 2 * t / STEPS) * N - 1e-9) for t in range(1, STEPS + 1)]


# %% [markdown]
# ## Decoding the toy grid
# `decode` records the mask after every step (`history`), so the step at which each position was
# fixed can be read off. With choice temperature 0 the order is pure confidence: the centre
# first, then outward, as neighbours become known. With MaskGIT's annealed noise (4.5 here) the
# early steps are spread over the grid, which avoids committing only one region first.

# %%
def fix_steps(choice_temperature: float, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    history: list[torch.Tensor] = []
    canvas = torch.full((1, N), MASK)
    out = decode(toy_logits, canvas, torch.ones(1, N, dtype=torch.bool), MASK, STEPS,
                 generator=torch.Generator().manual_seed(seed), temperature=0.7,
                 choice_temperature=choice_temperature, history=history)
    still_masked = torch.stack([h[0] for h in history])  # (T, 64)
    step_fixed = still_masked.long().sum(0) + 1  # masked after steps 1..s-1, fixed at step s
    return step_fixed.reshape(H, W), history, out


greedy_steps, greedy_hist, greedy_out = fix_steps(0.0)
noisy_steps, noisy_hist, noisy_out = fix_steps(4.5)
per_step = torch.bincount(greedy_steps.flatten(), minlength=STEPS + 1)[1:]
print("tokens fixed per step in the run:", per_step.tolist())
assert per_step.tolist() == cos_fixed  # decode follows the schedule exactly
first = greedy_steps.flatten() == 1
assert centre_bias[0, first].mean() > centre_bias.mean()  # confidence order starts at the centre
print(f"tokens equal to the target: {(greedy_out == target).float().mean():.0%} (choice temp. 0), "
      f"{(noisy_out == target).float().mean():.0%} (choice temp. 4.5)")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
x = torch.arange(1, STEPS + 1)
axes[0].bar(x - 0.2, cos_fixed, 0.4, label="cosine")
axes[0].bar(x + 0.2, lin_fixed, 0.4, label="linear")
axes[0].set_xlabel("step t")
axes[0].set_ylabel("tokens fixed at step t")
axes[0].set_title(f"Schedule, N = {N}, T = {STEPS}")
axes[0].legend()
for ax, steps_map, title in [(axes[1], greedy_steps, "step at which each token is fixed\n(choice temperature 0)"),
                             (axes[2], noisy_steps, "step at which each token is fixed\n(choice temperature 4.5)")]:
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
