# %% [markdown]
# # Residual quantisation: reconstruction error by depth
#
# A residual quantiser replaces one code per position by a stack of $D$ codes: the first code
# approximates the vector, the second approximates what is left over, and so on
# (`reference_impls.residual_vq`):
#
# $$r_0 = z, \quad k_d = \arg\min_k \lVert r_{d-1} - e_d(k) \rVert, \quad r_d = r_{d-1} - e_d(k_d), \quad \hat z^{(d)} = \sum_{i \le d} e_i(k_i).$$
#
# With $K$ codes per level, $D$ levels name $K^D$ different vectors for $D \log_2 K$ bits, a
# number of points no single codebook could hold. RQ-VAE shares one codebook across depths;
# SoundStream gives each level its own and trains with quantizer dropout so that the first $n_q$
# levels alone work at any bitrate. This notebook trains the three variants on the same toy
# vectors and measures the error of the partial sums $\hat z^{(d)}$ for every depth $d$.

# %%
import matplotlib.pyplot as plt
import torch

from reference_impls.residual_vq import ResidualVQ

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
DIM, K, DEPTH, STEPS = 8, 16, 8, 500
mixing = torch.randn(DIM, DIM, generator=gen) * torch.linspace(1.5, 0.2, DIM)  # anisotropic
data = torch.randn(4096, DIM, generator=gen) @ mixing.T  # (4096, 8): correlated Gaussian vectors
total_var = data.var(0).sum().item()
print(f"{len(data)} vectors, total variance {total_var:.2f}")


def train(rvq: ResidualVQ, n_q: int | None = None) -> ResidualVQ:
    """Learn the codebooks on the codebook + commitment loss (no encoder: the data are the latents)."""
    with torch.no_grad():
        rvq.codebook.mul_(data.std())  # start the codes at the scale of the data
    opt = torch.optim.Adam(rvq.parameters(), lr=1e-2)
    rvq.train()
    for _ in range(STEPS):
        x = data[torch.randint(0, len(data), (256,), generator=gen)][:, :, None]  # (256, 8, 1)
        out = rvq(x, n_q)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return rvq.eval()


@torch.no_grad()
def error_by_depth(rvq: ResidualVQ) -> list[float]:
    """Mean squared error ||z - z_hat^(d)||^2 (summed over dimensions) for d = 1..depth."""
    out = rvq(data[:, :, None], n_q=rvq.depth)
    return [((p[:, :, 0] - data) ** 2).sum(1).mean().item() for p in out.partial_sums]


# %%
variants = {
    "one codebook per level (SoundStream)": ResidualVQ(K, DIM, DEPTH, shared_codebook=False, generator=torch.Generator().manual_seed(1)),
    "shared codebook (RQ-VAE)": ResidualVQ(K, DIM, DEPTH, shared_codebook=True, generator=torch.Generator().manual_seed(1)),
    "per level + quantizer dropout": ResidualVQ(K, DIM, DEPTH, shared_codebook=False, quantizer_dropout=True, generator=torch.Generator().manual_seed(1)),
}
errors = {name: error_by_depth(train(rvq)) for name, rvq in variants.items()}
# a single flat codebook with as many bits as two levels: K^2 = 256 codes
flat = train(ResidualVQ(K * K, DIM, 1, generator=torch.Generator().manual_seed(1)))
flat_err = error_by_depth(flat)[0]
for name, err in errors.items():
    print(f"{name:38s}", " ".join(f"{e:6.2f}" for e in err))
print(f"flat codebook of {K * K} codes (8 bits): {flat_err:.2f}")

# %%
per_level = errors["one codebook per level (SoundStream)"]
# each added level removes part of the remaining error
assert all(b < a for a, b in zip(per_level, per_level[1:]))
assert per_level[-1] < 0.2 * per_level[0]
# trained on all levels at once, depth 1 alone is a plain VQ with K codes: far worse than depth 8
assert per_level[0] > 0.25 * total_var

# %% [markdown]
# ## Error against depth (and bits)
# Each level costs $\log_2 16 = 4$ bits per position. The error falls with every level, quickly
# at first and then more slowly, since later levels quantise residuals that are small and close
# to isotropic. A shared codebook must serve residuals of every scale at once and falls behind
# the per-level codebooks after the first level or two. With quantizer dropout the deep levels
# are trained only on the batches that reach them (level 8 on about one batch in eight), so in
# this short run the last level adds error instead of removing it. The star is one flat codebook
# with 256 codes, the same 8 bits as two levels: it does a little better than two residual levels,
# as it is free to place all 256 points, but its size grows as $K^D$ while the residual stack
# grows as $K D$.

# %%
bits = [4 * d for d in range(1, DEPTH + 1)]
fig, (a0, a1) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, err in errors.items():
    a0.plot(bits, err, "o-", label=name)
a0.plot([8], [flat_err], "k*", ms=12, label=f"flat codebook, {K * K} codes")
a0.axhline(total_var, color="gray", ls=":", lw=1, label="error of predicting 0")
a0.set_yscale("log")
a0.set_xlabel("bits per position (4 per level)")
a0.set_ylabel("mean squared error")
a0.set_title("Reconstruction error of the partial sums")
a0.legend(fontsize=7)

# the first two dimensions of the data and the partial sums of one model, for a few points
rvq = variants["one codebook per level (SoundStream)"]
with torch.no_grad():
    parts = rvq(data[:200, :, None]).partial_sums
a1.scatter(data[:200, 0], data[:200, 1], s=6, c="lightgray", label="data")
for d, marker in [(0, "x"), (1, "+"), (3, "."), (7, "1")]:
    a1.scatter(parts[d][:, 0, 0], parts[d][:, 1, 0], s=14, marker=marker, label=f"partial sum, depth {d + 1}")
a1.set_title("Partial sums move toward the data with depth\n(first two of 8 dimensions)")
a1.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# What this means for a token prior: each position now carries $D$ tokens rather than one, so
# the sequence for an autoregressive prior is $D$ times longer unless the prior is built for
# stacks (RQ-VAE's RQ-Transformer predicts the $D$ codes of a position with a small second
# transformer), and quantizer dropout lets one trained tokenizer be read at several depths.
