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
# | training signal to the encoder | straight-through copy of the decoder gradient, plus codebook and commitment losses | Gumbel-Softmax relaxation: the decoder sees a soft mixture $\sum_k y_k e_k$, plus a KL term to a uniform prior |

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.dvae import DVAE
from reference_impls.gumbel import anneal_temperature
from reference_impls.vq import pairwise_sq_distances
from reference_impls.vqvae import VQVAE, fit, toy_images

torch.set_num_threads(1)
torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
K, D = 16, 8  # codebook size and code dimension, the same for both models
images = toy_images(256, size=16, generator=gen)  # (256, 1, 16, 16): blobs and stripes
print(images.shape)

# %% [markdown]
# ## Train both on the same images
# The VQ-VAE is trained with its own `fit` loop (Eq. 3 of the VQ-VAE paper). The dVAE is trained
# with a short Adam loop on its negative ELBO, annealing the Gumbel-Softmax temperature with
# `anneal_temperature`. Both downsample by 4: a 16 x 16 image becomes a 4 x 4 grid of tokens.

# %%
vqvae = VQVAE(in_ch=1, hidden=16, num_codes=K, code_dim=D, downsample=2, generator=gen)
vqvae.init_codes(images[:64], generator=gen)
vq_losses = fit(vqvae, images, steps=200, lr=3e-3, batch=32, generator=gen)

dvae = DVAE(in_ch=1, hidden=16, num_codes=K, code_dim=D)
opt = torch.optim.Adam(dvae.parameters(), lr=3e-3)
dvae.train()
dvae_losses = []
for step in range(200):
    x = images[torch.randint(0, len(images), (32,), generator=gen)]
    tau = anneal_temperature(step, rate=1e-2, tau_min=0.5, every=10)
    out = dvae(x, tau=tau, generator=gen)
    loss = dvae.loss(x, out, beta=0.05)
    opt.zero_grad()
    loss.backward()
    opt.step()
    dvae_losses.append(loss.item())
print(f"VQ-VAE loss {vq_losses[-1]:.4f}   dVAE loss {dvae_losses[-1]:.4f}")

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
vq_mse = torch.mean((vq_rec - x) ** 2).item()
dv_mse = torch.mean((dv_rec - x) ** 2).item()
print(f"reconstruction MSE: VQ-VAE {vq_mse:.4f}, dVAE {dv_mse:.4f} (pixel variance {x.var().item():.4f})")

# %%
fig, axes = plt.subplots(5, 6, figsize=(9, 7.5))
rows = [("input", x[:, 0]), ("VQ-VAE grid", vq_idx), ("VQ-VAE recon.", vq_rec[:, 0]),
        ("dVAE grid", dv_idx), ("dVAE recon.", dv_rec[:, 0])]
for r, (name, data) in enumerate(rows):
    for c in range(6):
        ax = axes[r, c]
        if "grid" in name:
            ax.imshow(data[c], cmap="tab20", vmin=0, vmax=K - 1)
            for (i, j), v in zip(torch.cartesian_prod(torch.arange(4), torch.arange(4)).tolist(), data[c].flatten().tolist()):
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
# * An autoregressive prior, in DALL-E or in a VQ-VAE pipeline, models the **indices** only, so
#   the prior does not care which of the two tokenisers produced them.
# * The difference is in stage one: nearest neighbour plus straight-through (VQ-VAE) against a
#   predicted categorical distribution trained through the Gumbel-Softmax relaxation with a KL term
#   (dVAE). The loss curves below come from these two training rules.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(vq_losses, label="VQ-VAE: MSE + codebook + beta * commitment")
ax.plot(dvae_losses, label="dVAE: summed squared error + beta * KL")
ax.set_yscale("log")
ax.set_xlabel("step")
ax.legend(fontsize=8)
ax.set_title("Training losses (different objectives, not comparable in value)")
fig.tight_layout()
plt.show()
