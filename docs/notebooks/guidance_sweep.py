# %% [markdown]
# # Classifier-free guidance: sweeping the guidance scale
#
# Classifier-free guidance trains one network both with and without the condition (the condition
# is dropped for a fraction $p_{\text{uncond}}$ of the training examples) and, at sampling time,
# extrapolates from the unconditional prediction toward the conditional one
# (`reference_impls.guidance`):
#
# $$\tilde\epsilon = (1 + w)\, \epsilon(x_t, c) - w\, \epsilon(x_t), \qquad\text{equivalently}\qquad \tilde\epsilon = \epsilon(x_t) + s\,(\epsilon(x_t, c) - \epsilon(x_t)),\ s = 1 + w.$$
#
# The toy: three classes in 2-D, each a Gaussian with standard deviation 0.5 around a corner of a
# triangle, so the classes overlap. Both predictions are **exact** (the conditional one is the
# noise predictor of one Gaussian, `ddim.gaussian_eps_oracle`; the unconditional one is the
# mixture of the three), so the sweep shows what guidance does to the distribution itself, with no
# training error mixed in. Sampling is deterministic DDIM with 50 steps (`reference_impls.ddim`).

# %%
import math

import matplotlib.pyplot as plt
import torch

from reference_impls.ddim import ddim_sample, gaussian_eps_oracle, make_timesteps
from reference_impls.ddpm import Schedule, linear_betas
from reference_impls.guidance import drop_condition, guide_s, guide_w

torch.set_num_threads(1)
schedule = Schedule(linear_betas(1000))
timesteps = make_timesteps(1000, 50, "trailing")
angles = torch.tensor([90.0, 210.0, 330.0]) * math.pi / 180
means = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (3, 2) at radius 1
STD = 0.5
class_eps = [gaussian_eps_oracle(schedule, m, STD) for m in means]


def uncond_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[eps | x_t] for the equal mixture of the three classes (no condition)."""
    a = schedule.alpha_bars[t].float()[:, None, None]  # (B, 1, 1)
    var = a * STD**2 + 1 - a
    sq = ((x[:, None, :] - a.sqrt() * means[None]) ** 2).sum(-1, keepdim=True)  # (B, 3, 1)
    resp = torch.softmax(-sq / (2 * var), dim=1)
    return (resp * torch.stack([e(x, t) for e in class_eps], dim=1)).sum(1)


def guided(label: int, w: float):
    """The guided noise predictor for one class: Eq. 6 of classifier-free guidance."""
    return lambda x, t: guide_w(class_eps[label](x, t), uncond_eps(x, t), w)


def classify(x: torch.Tensor) -> torch.Tensor:
    """The Bayes classifier of the clean data: nearest class mean (equal, isotropic covariances)."""
    return torch.cdist(x, means).argmin(dim=1)


# %% [markdown]
# ## Training side: condition dropout
# `drop_condition` is what makes one network serve both branches: here labels 0..2 with a null
# label 3, dropped with probability 0.1.

# %%
labels = torch.randint(0, 3, (1000,), generator=torch.Generator().manual_seed(0))
cond, dropped = drop_condition(labels, torch.tensor(3), p_uncond=0.1, generator=torch.Generator().manual_seed(0))
print(f"dropped {dropped.float().mean():.1%} of the conditions; labels now {sorted(set(cond.tolist()))}")
assert bool((cond[dropped] == 3).all()) and bool((cond[~dropped] == labels[~dropped]).all())

# %% [markdown]
# ## The sweep
# 600 samples per class for each guidance weight $w$ (the $w$-form; $w = 0$ is the plain
# conditional model).

# %%
weights = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
x_T = torch.randn(600, 2, generator=torch.Generator().manual_seed(1))
results = {}
for w in weights:
    per_class = [ddim_sample(schedule, guided(c, w), x_T, timesteps) for c in range(3)]
    acc = sum((classify(x) == c).float().mean().item() for c, x in enumerate(per_class)) / 3
    spread = sum(x.std(dim=0).mean().item() for x in per_class) / 3
    push = sum((x.mean(0) - means[c]).norm().item() for c, x in enumerate(per_class)) / 3
    results[w] = dict(samples=per_class, acc=acc, spread=spread, push=push)
    print(f"w = {w:3.1f}: accuracy {acc:.1%}, per-class std {spread:.3f} (data {STD}), "
          f"class mean moved by {push:.2f}")

# %%
acc = [results[w]["acc"] for w in weights]
spread = [results[w]["spread"] for w in weights]
assert abs(spread[0] - STD) < 0.05  # w = 0 samples the class distribution itself
assert all(b >= a - 0.005 for a, b in zip(acc, acc[1:]))  # accuracy rises with w
assert all(b < a for a, b in zip(spread, spread[1:]))  # diversity falls with w
# the s-form with s = 1 + w is the same prediction
x, t = torch.randn(5, 2), torch.full((5,), 500)
assert torch.allclose(guide_s(class_eps[0](x, t), uncond_eps(x, t), 3.0), guided(0, 2.0)(x, t), atol=1e-6)

# %% [markdown]
# ## What the scale does
# Top: samples of the three classes for each $w$, with the class means as crosses. Bottom: how
# often a sample falls on its own class's side (accuracy of the Bayes classifier of the clean
# data), how widely each class spreads, and how far the class's sample mean moves from the true
# mean. Guidance sharpens each class and pushes it away from the others: fewer ambiguous
# samples, less diversity, and at large $w$ a distribution that no longer matches the class
# (its mean drifts outward): the fidelity against diversity trade-off that image papers measure with sample-quality and diversity scores.

# %%
fig = plt.figure(figsize=(15, 7))
for i, w in enumerate(weights):
    ax = fig.add_subplot(2, len(weights), i + 1)
    for c, x in enumerate(results[w]["samples"]):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color=f"C{c}")
    ax.scatter(means[:, 0], means[:, 1], c="k", marker="x", s=30)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"w = {w} (s = {1 + w})", fontsize=9)
for j, (key, label) in enumerate([("acc", "classified as own class"), ("spread", "per-class std"),
                                  ("push", "distance of sample mean from class mean")]):
    ax = fig.add_subplot(2, 3, 4 + j)
    ax.plot(weights, [results[w][key] for w in weights], "o-")
    if key == "spread":
        ax.axhline(STD, color="k", ls=":", label="data")
        ax.legend()
    ax.set_xlabel("guidance weight w")
    ax.set_title(label, fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The same rule on token logits
# Token priors (Parti, Make-A-Scene, Muse) apply the identical formula to the logits of the next
# token. With two made-up logit vectors over 16 tokens, raising the scale sharpens the
# distribution toward the tokens the condition favours, and its entropy falls.

# %%
g = torch.Generator().manual_seed(3)
uncond_logits = torch.randn(16, generator=g)
cond_logits = uncond_logits + 1.5 * torch.randn(16, generator=g)
scales = [1.0, 2.0, 3.0, 5.0]
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.2))
entropies = []
for k, s in enumerate(scales):
    p = guide_s(cond_logits, uncond_logits, s).softmax(-1)
    entropies.append(-(p * p.log()).sum().item())
    a0.bar(torch.arange(16) + (k - 1.5) * 0.2, p.numpy(), 0.2, label=f"s = {s}")
a0.set_xlabel("token")
a0.set_title("next-token distribution under guidance")
a0.legend(fontsize=8)
a1.plot(scales, entropies, "o-")
a1.set_xlabel("guidance scale s")
a1.set_ylabel("entropy (nats)")
fig.tight_layout()
plt.show()
assert entropies[-1] < entropies[0]
