# %% [markdown]
# # DDPM against DDIM on 2-D toy data: samples and the number of steps
#
# DDIM uses the noise predictor trained for DDPM unchanged and only replaces the sampler
# (`reference_impls.ddpm`, `reference_impls.ddim`). DDPM's ancestral sampler walks all $T = 1000$
# training steps and adds fresh noise at each; DDIM jumps along a subsequence of $S$ steps, with a
# parameter $\eta$ that sets how much noise is injected ($\eta = 0$: deterministic; $\eta = 1$:
# DDPM's posterior variance on the shorter path).
#
# To compare samplers and nothing else, the noise predictor here is **exact**: the data are a
# mixture of eight Gaussians on a circle, whose noised marginals are Gaussian mixtures too, so
# $\epsilon^*(x_t, t) = \mathbb{E}[\epsilon \mid x_t]$ is a responsibility-weighted sum of the
# per-component predictors (`ddim.gaussian_eps_oracle`). Any error in the samples then comes from
# the sampler's discretisation.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

from reference_impls.ddim import ddim_sample, gaussian_eps_oracle, make_timesteps
from reference_impls.ddpm import Schedule, linear_betas, p_sample_loop

torch.set_num_threads(1)
schedule = Schedule(linear_betas(1000))  # DDPM's T = 1000 linear schedule
angles = torch.arange(8) * (2 * math.pi / 8)
means = torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], dim=1)  # (8, 2) on a circle of radius 2
STD = 0.1
components = [gaussian_eps_oracle(schedule, m, STD) for m in means]


def mixture_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[eps | x_t] for the 8-component mixture: (B, 2), (B,) -> (B, 2)."""
    a = schedule.alpha_bars[t].float()[:, None, None]  # (B, 1, 1)
    var = a * STD**2 + 1 - a  # variance of x_t given the component
    sq = ((x[:, None, :] - a.sqrt() * means[None]) ** 2).sum(-1, keepdim=True)  # (B, 8, 1)
    resp = torch.softmax(-sq / (2 * var), dim=1)  # (B, 8, 1) posterior over components
    eps_k = torch.stack([c(x, t) for c in components], dim=1)  # (B, 8, 2)
    return (resp * eps_k).sum(1)


def draw_data(n: int, gen: torch.Generator) -> torch.Tensor:
    return means[torch.randint(0, 8, (n,), generator=gen)] + STD * torch.randn(n, 2, generator=gen)


def quality(samples: torch.Tensor) -> tuple[float, float]:
    """(fraction of samples farther than 3 std from every mode,
        spread of the other samples around their mode relative to the data's: 1 for the data)."""
    d = torch.cdist(samples, means).min(dim=1).values
    on = d < 3 * STD
    spread = d[on].pow(2).mean().sqrt().item() / (math.sqrt(2) * STD) if on.any() else float("nan")
    return 1 - on.float().mean().item(), spread


data = draw_data(1000, torch.Generator().manual_seed(0))
print("data: off-mode %.1f%%, spread %.2f" % (100 * quality(data)[0], quality(data)[1]))

# %% [markdown]
# ## Samplers
# DDPM with all 1000 steps, and DDIM with $\eta = 0$ and $\eta = 1$ over $S$ evenly spaced steps
# ("trailing" spacing, which starts at the last training step so the first step sees pure noise).

# %%
x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
t0 = time.perf_counter()
ddpm = p_sample_loop(schedule, mixture_eps, (1000, 2), generator=torch.Generator().manual_seed(1))
print(f"DDPM, 1000 steps ({time.perf_counter() - t0:.1f} s): off-mode {quality(ddpm)[0]:.1%}, spread {quality(ddpm)[1]:.2f}")

step_counts = [2, 5, 10, 20, 50, 100, 250, 1000]
runs: dict[tuple[float, int], torch.Tensor] = {}
for eta in (0.0, 1.0):
    for steps in step_counts:
        ts = make_timesteps(1000, steps, "trailing")
        runs[eta, steps] = ddim_sample(schedule, mixture_eps, x_T, ts, eta=eta,
                                       generator=torch.Generator().manual_seed(2))
for (eta, steps), x in runs.items():
    off, spread = quality(x)
    print(f"DDIM eta={eta:.0f} S={steps:4d}: off-mode {off:6.1%}, spread {spread:.2f}")

# %%
q0 = {s: quality(runs[0.0, s]) for s in step_counts}
q1 = {s: quality(runs[1.0, s]) for s in step_counts}
assert quality(ddpm)[0] < 0.03  # the full ancestral sampler reproduces the data
assert q0[20][0] < 0.03  # deterministic DDIM is as good with 20 steps (20 network calls, not 1000)
assert q0[2][0] > 0.5  # two steps are far too few
assert q0[5][0] < q1[5][0] and q0[10][0] < q1[10][0]  # with few steps, eta = 0 beats the noisy sampler

# %% [markdown]
# ## Samples and the step-count trade-off
# Top row: the data, DDPM with 1000 steps, DDIM ($\eta = 0$) with 5, 10 and 50 steps, and the
# noisy $\eta = 1$ sampler with 10 steps. Bottom left: the fraction of samples that land between
# modes, against the number of steps (each step is one network call); bottom right: how widely the
# other samples spread around their mode (1 = as wide as the data). About 20 steps put nearly all
# samples on a mode, rather than 1000; below that the deterministic sampler strands fewer samples
# between modes than the noisy one, and with 2 steps both fail. The spread panel shows what a
# count of "good samples" hides: with 20 to 100 steps the modes come out too narrow (the coarse
# sampler shrinks them) and their width approaches the data's only with hundreds of steps.

# %%
fig = plt.figure(figsize=(14, 6.5))
panels = [("data", data), ("DDPM, 1000 steps", ddpm), ("DDIM eta=0, 5 steps", runs[0.0, 5]),
          ("DDIM eta=0, 10 steps", runs[0.0, 10]), ("DDIM eta=0, 50 steps", runs[0.0, 50]),
          ("DDIM eta=1, 10 steps", runs[1.0, 10])]
for i, (title, x) in enumerate(panels):
    ax = fig.add_subplot(2, 6, i + 1)
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
    ax.scatter(means[:, 0], means[:, 1], s=12, c="red", marker="x")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
for j, (label, which) in enumerate([("fraction of samples off every mode", 0), ("spread around the mode (data = 1)", 1)]):
    ax = fig.add_subplot(2, 2, 3 + j)
    ax.plot(step_counts, [q0[s][which] for s in step_counts], "o-", label="DDIM, eta = 0 (deterministic)")
    ax.plot(step_counts, [q1[s][which] for s in step_counts], "s-", label="DDIM, eta = 1 (DDPM-like noise)")
    ax.axhline(quality(ddpm)[which], color="C2", ls="--", label="DDPM, 1000 steps")
    ax.axhline(quality(data)[which], color="k", ls=":", label="data")
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps S (network calls)")
    ax.set_ylabel(label)
    if which == 0:
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(0, 1.2)
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# For a latent-diffusion prior over a tokenizer's continuous latents, this is the knob that sets
# sampling cost; for a VQ-VAE with an autoregressive prior the cost is instead one network call
# per token, fixed by the grid size.
