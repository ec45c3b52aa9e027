# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   latent_atlas:
#     seconds: 22  # one run on two idle cores; a fresh clone runs the longest notebooks first
# ---

# %% [markdown]
# # dVAE or VQ-VAE?
#
# DALL-E's first stage (a discrete VAE) and the VQ-VAE are often described in different words:
# "a grid of tokens, each one of $K$ values" for the first, "encoder vectors replaced by their
# nearest codebook vector" for the second. This notebook trains a tiny model of each on the same
# toy images and puts what they produce side by side. Both end up with the **same kind of latent
# space**: a 2-D grid of integer indices, each pointing into a codebook of $K$ learned vectors,
# and the decoder reads the looked-up vectors. What differs is **how the grid is obtained and
# how the encoder is trained**:
#
# | | VQ-VAE (`reference_impls.vqvae`, `reference_impls.vq`) | dVAE (`reference_impls.dvae`, `reference_impls.gumbel`) |
# |---|---|---|
# | encoder output per position | a vector $z_e \in \mathbb{R}^D$ | $K$ logits, a distribution $q(k \mid x)$ |
# | index | $\arg\min_k \lVert z_e - e_k \rVert$ (nearest neighbour) | $\arg\max_k$ of the logits |
# | training signal to the encoder | straight-through gradient, commitment loss | Gumbel-Softmax relaxation, KL term |
# | prior over codes in training | uniform; the KL to it is a constant | uniform; the KL to it is a real term |
#
# The VQ-VAE's encoder receives a straight-through copy of the decoder gradient, plus the commitment
# loss (the codebook loss trains only the codes). Under the dVAE's Gumbel-Softmax relaxation the
# decoder sees a soft mixture $\sum_k y_k e_k$, plus a KL term to a uniform prior. The VQ-VAE's
# posterior is one-hot, so its KL to the uniform prior is the constant $\log K$; the KL of the
# dVAE's soft posterior $q(k \mid x)$ is a real term.

# %% tags=["parameters"]
SEEDS = [0, 1, 2, 3, 4]  # 5 to 10 seeds (images, initialisations and batches are drawn from each)
STEPS = 300  # training steps of each model, 200 to 600
K = 16  # codebook size of both models, 8 to 32

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.dvae import DVAE
from reference_impls.gumbel import anneal_temperature
from reference_impls.vq import pairwise_sq_distances, perplexity
from reference_impls.vqvae import VQVAE, fit, toy_images

torch.set_num_threads(1)
assert len(SEEDS) >= 5 and 200 <= STEPS <= 600 and 8 <= K <= 32
D = 8  # code dimension, the same for both models

# %% [markdown]
# ## Train both on the same images
# The VQ-VAE is trained with its own `fit` loop (Eq. 3 of the VQ-VAE paper), its codebook seeded
# with encoder outputs of a batch. The dVAE is trained with Adam on its negative ELBO, annealing
# the Gumbel-Softmax temperature with `anneal_temperature`. Both downsample by 4: a 16 x 16 image
# becomes a 4 x 4 grid of tokens. Each model is scored on all 256 images after half and after all
# of its steps: reconstruction error, and how many of the $K$ codes its grids use (count and
# perplexity of the code histogram).


# %%
def train_dvae(dvae: DVAE, images: torch.Tensor, steps: int, gen: torch.Generator, start: int = 0) -> None:
    opt = torch.optim.Adam(dvae.parameters(), lr=3e-3)
    dvae.train()
    for step in range(start, start + steps):
        x = images[torch.randint(0, len(images), (32,), generator=gen)]
        tau = anneal_temperature(step, rate=1e-2, tau_min=0.5, every=10)
        loss = dvae.loss(x, dvae(x, tau=tau, generator=gen), beta=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dvae.eval()


@torch.no_grad()
def scores(rec: torch.Tensor, idx: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    return {
        "mse": torch.mean((rec - images) ** 2).item(),
        "used": idx.unique().numel(),
        "perplexity": perplexity(idx.flatten(), K).item(),
    }


results = {"VQ-VAE": [], "dVAE": []}  # per seed: [scores after STEPS // 2, after STEPS]
for seed in SEEDS:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images = toy_images(256, size=16, generator=gen)  # (256, 1, 16, 16): blobs and stripes
    vqvae = VQVAE(in_ch=1, hidden=16, num_codes=K, code_dim=D, downsample=2, generator=gen)
    vqvae.init_codes(images[:64], generator=gen)
    dvae = DVAE(in_ch=1, hidden=16, num_codes=K, code_dim=D)
    per = {"VQ-VAE": [], "dVAE": []}
    for half in range(2):
        fit(vqvae, images, steps=STEPS // 2, lr=3e-3, batch=32, generator=gen)
        vqvae.eval()
        with torch.no_grad():
            rec, out = vqvae(images)
        per["VQ-VAE"].append(scores(rec, out.indices, images))
        train_dvae(dvae, images, STEPS // 2, gen, start=half * (STEPS // 2))
        with torch.no_grad():
            dv = dvae(images)
        per["dVAE"].append(scores(dv.x_hat, dv.indices, images))
    for name in results:
        results[name].append(per[name])
    if seed == SEEDS[0]:
        shown_images, shown_vqvae, shown_dvae = images, vqvae, dvae  # the models pictured below


def metric(name: str, key: str, stage: int = -1) -> torch.Tensor:
    return torch.tensor([r[stage][key] for r in results[name]], dtype=torch.float64)


print(f"all 256 images; mean +- std over seeds {SEEDS}; K = {K}")
print(f"{'':8s} {'MSE, STEPS/2':>18s} {'MSE, STEPS':>18s} {'codes used':>14s} {'perplexity':>14s}")
for name in results:
    m0, m1, u, pp = metric(name, "mse", 0), metric(name, "mse"), metric(name, "used"), metric(name, "perplexity")
    print(
        f"{name:8s} {m0.mean():9.4f} +- {m0.std():.4f} {m1.mean():9.4f} +- {m1.std():.4f} "
        f"{u.mean():7.1f} +- {u.std():4.1f} {pp.mean():7.1f} +- {pp.std():4.1f}"
    )

# %%
better_mse = int((metric("VQ-VAE", "mse") < metric("dVAE", "mse")).sum())
wider = int((metric("VQ-VAE", "perplexity") > metric("dVAE", "perplexity")).sum())
print(
    f"VQ-VAE reconstructs better on {better_mse} of {len(SEEDS)} seeds; "
    f"its grids have the higher perplexity on {wider} of {len(SEEDS)} seeds"
)
# on average over the seeds, at every budget and size of the stated ranges: the VQ-VAE reconstructs
# better and its grids use more of the codebook; seed by seed the dVAE sometimes wins (the tally)
assert metric("VQ-VAE", "mse").mean() < metric("dVAE", "mse").mean()
assert metric("VQ-VAE", "perplexity").mean() > metric("dVAE", "perplexity").mean()
images, vqvae, dvae = shown_images, shown_vqvae, shown_dvae

# %% [markdown]
# ## The latent of each model: a grid of indices into a codebook
# At evaluation both models map an image to an integer grid of the same shape, and both decode
# that grid by looking up rows of a $K \times D$ table. The cell checks it.

# %%
vqvae.eval()
dvae.eval()
x = images[:6]
with torch.no_grad():
    vq_rec, vq_out = vqvae(x)
    vq_idx = vq_out.indices  # (6, 4, 4)
    dv_out = dvae(x)
    dv_idx = dv_out.indices  # (6, 4, 4)
    dv_rec = dv_out.x_hat
print("VQ-VAE indices", tuple(vq_idx.shape), vq_idx.dtype, "codebook", tuple(vqvae.quantizer.codebook.shape))
print("dVAE   indices", tuple(dv_idx.shape), dv_idx.dtype, "codebook", tuple(dvae.codebook.shape))
assert vq_idx.shape == dv_idx.shape == (6, 4, 4)
assert vq_idx.dtype == dv_idx.dtype == torch.int64
assert vqvae.quantizer.codebook.shape == dvae.codebook.shape == (K, D)
# the decoders read codebook rows selected by the grid, for both models
assert torch.allclose(dv_out.decoder_input, dvae.lookup(dv_idx))
assert torch.allclose(vq_out.z_q, vqvae.quantizer.lookup(vq_idx), atol=1e-6)

# %%
fig, axes = plt.subplots(5, 6, figsize=(9, 7.5))
rows = [
    ("input", x[:, 0]),
    ("VQ-VAE grid", vq_idx),
    ("VQ-VAE recon.", vq_rec[:, 0]),
    ("dVAE grid", dv_idx),
    ("dVAE recon.", dv_rec[:, 0]),
]
for r, (name, data) in enumerate(rows):
    for c in range(6):
        ax = axes[r, c]
        if "grid" in name:
            ax.imshow(data[c], cmap="tab20", vmin=0, vmax=K - 1)
            cells = torch.cartesian_prod(torch.arange(4), torch.arange(4)).tolist()
            for (i, j), v in zip(cells, data[c].flatten().tolist(), strict=True):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
        else:
            ax.imshow(data[c], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[r, 0].set_ylabel(name, fontsize=9)
fig.suptitle("Both models turn a 16x16 image into a 4x4 grid of indices in {0..15}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Where they differ: how one token is chosen
# For one grid position of one image, the left panel shows the VQ-VAE's squared distances from
# the encoder vector $z_e$ to each of the $K$ codes: the token is the nearest code, a hard choice
# with no probability attached. The right panel shows the dVAE's distribution $q(k \mid x)$ at the
# same position (softmax of its logits), and one Gumbel-Softmax sample at $\tau = 1$ and at
# $\tau = 0.3$: in training the decoder receives the mixture $\sum_k y_k e_k$ of codebook vectors
# weighted by such a sample, which is what makes the encoder differentiable without a
# straight-through copy.

# %%
from reference_impls.gumbel import gumbel_softmax

with torch.no_grad():
    z_e = vqvae.encoder(x[:1])  # (1, D, 4, 4)
    d2 = pairwise_sq_distances(z_e[0, :, 1, 1][None], vqvae.quantizer.codebook)[0]  # (K,)
    logits = dvae.encoder(x[:1])[0, :, 1, 1]  # (K,)
    q = logits.softmax(0)
    y1 = gumbel_softmax(logits, tau=1.0, generator=torch.Generator().manual_seed(1))
    y03 = gumbel_softmax(logits, tau=0.3, generator=torch.Generator().manual_seed(1))
assert int(d2.argmin()) == int(vq_idx[0, 1, 1]) and int(logits.argmax()) == int(dv_idx[0, 1, 1])

fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.2))
a0.bar(range(K), d2.numpy(), color=["C3" if k == int(d2.argmin()) else "C7" for k in range(K)])
a0.set_title("VQ-VAE: distance to each code (red = chosen)")
a0.set_xlabel("code k")
w = 0.28
a1.bar(torch.arange(K) - w, q.numpy(), w, label="q(k|x)")
a1.bar(torch.arange(K), y1.numpy(), w, label="Gumbel-Softmax, tau=1")
a1.bar(torch.arange(K) + w, y03.numpy(), w, label="Gumbel-Softmax, tau=0.3")
a1.set_title("dVAE: a distribution over codes, relaxed in training")
a1.set_xlabel("code k")
a1.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reading the result
# * The two latent spaces have the same form: a 4 x 4 grid (32 x 32 in DALL-E) of indices into
#   a table of $K$ vectors ($K = 8192$ in DALL-E). "A grid of values" and "a grid of vectors" are
#   two views of one thing: an index and the codebook row it selects.
# * An autoregressive prior, in DALL-E or in a VQ-VAE pipeline, models the **indices** only. But
#   the two tokenisers do not hand it the same indices: on average over the seeds, at every
#   budget and codebook size of the stated ranges, the dVAE's grids use fewer of the $K$ codes
#   (lower perplexity, first table) and reconstruct worse. Not on every seed: in trials with
#   seeds 20-24 and 101-105 at the ends of the ranges, the dVAE reconstructed better on 1 to 3
#   of the 10 seeds and had the higher perplexity on up to 1 of them (the tally above the
#   asserts counts them for the seeds run here). A
#   prior over dVAE tokens would model a smaller effective vocabulary and be limited by a worse
#   decoder. The budget matters: compare the columns at half and at all the steps. The toy does
#   not say how the two compare at DALL-E's scale, where the dVAE has 8192 codes.
# * The difference is in stage one: nearest neighbour plus straight-through with a commitment
#   loss (VQ-VAE) against a predicted categorical distribution trained through the Gumbel-Softmax
#   relaxation with a KL term (dVAE). Both train against a uniform prior over the codes; for the
#   VQ-VAE its KL is a constant, for the dVAE it is a real term that pushes $q(k \mid x)$ toward
#   uniform.
