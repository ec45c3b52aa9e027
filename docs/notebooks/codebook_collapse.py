# %% [markdown]
# # Codebook collapse and four ways of training a codebook
#
# A VQ-VAE codebook "collapses" when only a few of its $K$ codes are ever chosen: the others sit
# far from every encoder output, never win the nearest-neighbour lookup, and so never receive
# a gradient or an update. Usage is measured here by the number of distinct codes chosen in a
# batch and by the **perplexity** $\exp(H)$ of the code histogram (`reference_impls.vq.perplexity`:
# $K$ when all codes are used equally, 1 when a single code takes everything).
#
# Four quantisers, each inside the same tiny autoencoder on the same toy data:
#
# * **plain**: codebook learned by the codebook loss $\lVert \mathrm{sg}[z_e] - e \rVert^2$ (VQ-VAE);
# * **EMA**: codes set to running means of the vectors assigned to them (VQ-VAE-2);
# * **EMA + restarts**: EMA, and a code whose running usage falls below a threshold is moved onto a
#   random encoder output of the batch (Jukebox, `reference_impls.jukebox.RestartingQuantizer`);
# * **factorised, l2-normalised**: lookup in a 4-dimensional projection with unit-norm codes and
#   inputs, i.e. by cosine similarity (ViT-VQGAN, `VectorQuantizer(code_dim=4, l2_normalize=True)`).

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.jukebox import RestartingQuantizer
from reference_impls.vq import VectorQuantizer

torch.set_num_threads(1)
K, DIM, STEPS = 64, 8, 400
data_gen = torch.Generator().manual_seed(0)
centres = torch.randn(32, DIM, generator=data_gen) * 2.0  # 32 clusters in 8-D: the data want ~32 codes


def toy_batch(gen: torch.Generator, n: int = 256) -> torch.Tensor:
    """A batch (n, 8) from a mixture of 32 Gaussian clusters."""
    which = torch.randint(0, len(centres), (n,), generator=gen)
    return centres[which] + 0.3 * torch.randn(n, DIM, generator=gen)


def train(quantizer: nn.Module, seed: int = 0) -> dict[str, list[float]]:
    """Train encoder, quantiser and decoder together on reconstruction + the quantiser's loss."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, DIM))
    dec = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, DIM))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters(), *quantizer.parameters()], lr=2e-3)
    log = {"used": [], "perplexity": [], "mse": []}
    for _ in range(STEPS):
        x = toy_batch(gen)
        out = quantizer(enc(x)[:, :, None])  # channel-first (B, D, 1): one token per example
        rec = dec(out.z_q[:, :, 0])
        mse = F.mse_loss(rec, x)
        loss = mse + out.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        log["used"].append(out.indices.unique().numel())
        log["perplexity"].append(out.perplexity.item())
        log["mse"].append(mse.item())
    return log


# %% [markdown]
# ## Training
# All four start from the same random codebook $e_k \sim \mathcal{N}(0, I)$; the encoder's first
# outputs are small, so at the start only the few codes nearest the origin win.

# %%
torch.manual_seed(0)  # the projections of the factorised variant are drawn from the global generator
init = torch.Generator
variants = {
    "plain": VectorQuantizer(K, DIM, generator=init().manual_seed(1)),
    "EMA": VectorQuantizer(K, DIM, ema=True, decay=0.99, generator=init().manual_seed(1)),
    "EMA + restarts": RestartingQuantizer(K, DIM, decay=0.99, threshold=1.0, generator=init().manual_seed(1)),
    "factorised l2": VectorQuantizer(K, DIM, code_dim=4, l2_normalize=True, generator=init().manual_seed(1)),
}
logs = {name: train(q) for name, q in variants.items()}
for name, log in logs.items():
    tail = slice(-50, None)
    used = sum(log["used"][tail]) / 50
    ppl = sum(log["perplexity"][tail]) / 50
    mse = sum(log["mse"][tail]) / 50
    print(f"{name:15s} codes used {used:5.1f}/{K}  perplexity {ppl:5.1f}  reconstruction MSE {mse:.3f}")

# %%
final = {name: sum(log["perplexity"][-50:]) / 50 for name, log in logs.items()}
start = {name: sum(log["perplexity"][:10]) / 10 for name, log in logs.items()}
# restarts revive dead codes: more of the codebook in use than with plain or EMA training alone
assert final["EMA + restarts"] > final["plain"] and final["EMA + restarts"] > final["EMA"]
# without restarts, training starts collapsed onto a small part of the codebook
print({name: round(v, 1) for name, v in start.items()})
assert start["plain"] < K / 4 and start["EMA"] < K / 4

# %% [markdown]
# ## Usage over training
# Left: distinct codes per batch of 256; right: perplexity (running mean over 20 steps). The
# dashed line is the number of clusters in the data. Restarts lift usage within a few dozen
# steps, because every dead code is moved to a place where data lie; plain and EMA training only
# recover codes that happen to come closest to a moving encoder output.

# %%
def smooth(v: list[float], w: int = 20) -> torch.Tensor:
    t = torch.tensor(v, dtype=torch.float32)
    return F.avg_pool1d(t[None, None], w, stride=1)[0, 0]


fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for name, log in logs.items():
    axes[0].plot(log["used"], label=name, lw=1)
    axes[1].plot(smooth(log["perplexity"]), label=name)
    axes[2].plot(smooth(log["mse"]), label=name)
for ax in axes[:2]:
    ax.axhline(len(centres), color="k", ls="--", lw=0.8)
axes[0].set_title("distinct codes per batch")
axes[1].set_title("perplexity of code usage")
axes[2].set_title("reconstruction MSE")
axes[2].set_yscale("log")
for ax in axes:
    ax.set_xlabel("step")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The factorised, l2-normalised lookup starts wider than plain or EMA training, since on the
# unit sphere every code is at a comparable distance from every input; in this toy its reconstruction is the
# worst, as a 4-D unit vector cannot carry the length of the 8-D input. Which of these a real
# tokenizer needs depends on the data; the measurement to make is the same: usage and perplexity
# over training, next to reconstruction.
