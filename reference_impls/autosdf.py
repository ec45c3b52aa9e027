"""AutoSDF: a patch-wise VQ-VAE over a 3-D SDF grid and a random-order autoregressive prior.

Paper and note:
    - AutoSDF, Mittal et al. 2022 (papers/mittal2022autosdf.md): the P-VQ-VAE
      and the non-sequential autoregressive prior.
    The quantiser is vq.VectorQuantizer; attention, causal masks and sinusoidal positions come
    from reference_impls/attention.py.

P-VQ-VAE (patch-wise encoding, joint decoding):
    X (B, 1, D, D, D) is cut into n^3 non-overlapping patches of side p (n = D / p); every patch
    goes through the same encoder on its own, so the latent of patch g depends on patch g only:
        z_g = VQ(E(X_g)),   Z = {z_g}  an n x n x n grid of code indices
    the decoder sees the whole grid Z at once (neighbouring codes mix) and returns X_hat.

Non-sequential autoregressive prior:
    for a random permutation g_1 .. g_N of the N = n^3 grid locations,
        p(Z) = prod_i p(z_{g_i} | z_{g_1}, .., z_{g_{i-1}})
    The transformer reads the tokens in permuted order; step i carries the location g_i it must
    predict (a query-position embedding), and a causal mask over the permuted sequence. In grid
    coordinates that mask is `M[a, b] = [rank(b) <= rank(a)]`, a causal mask under the permutation;
    `M[g][:, g]` is lower-triangular.

Notation (code -> paper):
    patch      the patch side p (8 on a 64^3 grid in the released code)     n     grid side
    order      the permutation g                                           rank  its inverse

Left out: the task-specific conditionals (image, language) that the paper multiplies with the
prior, the T-SDF truncation, and the real sizes; the transformer here is one block.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions
from reference_impls.vq import QuantizerOutput, VectorQuantizer


def unfold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, D, D, D) -> (B * n^3, C, p, p, p), patches in raster order (i, j, k)."""
    b, c, d = x.shape[:3]
    n = d // p
    x = x.reshape(b, c, n, p, n, p, n, p).permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, n, n, n, C, p, p, p)
    return x.reshape(b * n**3, c, p, p, p)


def fold_grid(x: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """Per-patch latents (B * n^3, C, 1, 1, 1) -> grid (B, C, n, n, n)."""
    c = x.shape[1]
    return x.reshape(b, n, n, n, c).permute(0, 4, 1, 2, 3)


class PatchVQVAE(nn.Module):
    def __init__(
        self,
        grid: int = 16,
        patch: int = 4,
        hidden: int = 8,
        dim: int = 4,
        num_codes: int = 32,
        beta: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if grid % patch or patch & (patch - 1):
            raise ValueError("patch must be a power of two that divides the grid")
        self.grid, self.patch, self.n = grid, patch, grid // patch
        enc: list[nn.Module] = [nn.Conv3d(1, hidden, 3, padding=1)]
        size = patch
        while size > 1:  # halve the patch down to a single latent voxel
            enc += [nn.ReLU(), nn.Conv3d(hidden, hidden, 4, stride=2, padding=1)]
            size //= 2
        enc += [nn.ReLU(), nn.Conv3d(hidden, dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(num_codes, dim, beta=beta, generator=generator)
        dec: list[nn.Module] = [nn.Conv3d(dim, hidden, 3, padding=1)]  # mixes neighbouring codes
        while size < patch:
            dec += [nn.ReLU(), nn.ConvTranspose3d(hidden, hidden, 4, stride=2, padding=1)]
            size *= 2
        dec += [nn.ReLU(), nn.Conv3d(hidden, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode_continuous(self, sdf: torch.Tensor) -> torch.Tensor:
        """SDF (B, 1, D, D, D) -> z_e grid (B, dim, n, n, n), each cell from its own patch."""
        h = self.encoder(unfold_patches(sdf, self.patch))  # (B * n^3, dim, 1, 1, 1)
        return fold_grid(h, sdf.shape[0], self.n)

    def encode(self, sdf: torch.Tensor) -> torch.Tensor:
        """SDF -> code indices (B, n, n, n)."""
        return self.quantizer(self.encode_continuous(sdf)).indices

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(indices))  # (B, 1, D, D, D)

    def forward(self, sdf: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantizer(self.encode_continuous(sdf))
        return self.decoder(q.z_q), q


def random_order(n_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation g of the grid locations (N,)."""
    return torch.randperm(n_tokens, generator=generator)


def random_order_mask(order: torch.Tensor) -> torch.Tensor:
    """(N, N) bool in grid coordinates: location a may attend to b iff rank(b) <= rank(a)."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order))
    return rank[None, :] <= rank[:, None]


class RandomOrderPrior(nn.Module):
    """One-block transformer over tokens in a random order, predicting the token at g_i at step i.

    Inputs at step i: token z_{g_{i-1}} (a start token at i = 0) plus the position of g_{i-1}
    (what was seen) plus the position of g_i (what to predict next).
    """

    def __init__(self, num_codes: int, n_tokens: int, dim: int = 32, n_heads: int = 4):
        super().__init__()
        self.num_codes, self.n_tokens = num_codes, n_tokens
        self.tok = nn.Embedding(num_codes + 1, dim)  # last id = start token
        self.register_buffer("pos", sinusoidal_positions(n_tokens + 1, dim))  # last row = start position
        self.query = nn.Linear(dim, dim)  # embeds the position to predict
        self.block = TransformerBlock(dim, n_heads)  # the survey's one layer (attention.py)
        self.head = nn.Linear(dim, num_codes)

    def forward(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) in grid raster order, order (N,) -> logits (B, N, K) in permuted order:
        logits[:, i] is the distribution of tokens[:, order[i]]."""
        b, n = tokens.shape
        seen = tokens[:, order]  # (B, N) permuted
        start = torch.full((b, 1), self.num_codes, dtype=tokens.dtype, device=tokens.device)
        inp = torch.cat([start, seen[:, :-1]], dim=1)  # (B, N) shifted right
        seen_pos = torch.cat([order.new_tensor([n]), order[:-1]])  # (N,)
        h = self.tok(inp) + self.pos[seen_pos] + self.query(self.pos[order])  # (B, N, dim)
        h = self.block(h, mask=causal_mask(n, tokens.device))  # (B, N, dim)
        return self.head(h)  # (B, N, K)

    def loss(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        logits = self(tokens, order)
        return F.cross_entropy(logits.reshape(-1, self.num_codes), tokens[:, order].reshape(-1))
