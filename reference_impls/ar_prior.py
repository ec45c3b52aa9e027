"""The shared autoregressive token prior: a GPT-style decoder over codebook indices.

This is the survey's own kind of prior (a VQ-VAE codebook plus an autoregressive model of its
indices). Other modules import it (Parti, Make-A-Scene, ImageBART stages, CogView2).

Papers and notes:
    - Image GPT, Chen et al. 2020 (papers/chen2020generative.md): a k-means colour palette
      turns pixels into tokens (`kmeans`, `pixels_to_tokens`); raster order (`raster_flatten`);
      next-token prediction p(x) = prod_i p(x_i | x_<i) (`next_token_loss`).
    - CogView, Ding et al. 2021 (papers/ding2021cogview.md): one decoder-only transformer over
      [text tokens; image tokens] (`text_image_sequence`), Sandwich-LN blocks, PB-relaxed
      attention, and temperature / top-k / top-p sampling with a key-value cache.
    - CogView2, Ding et al. 2022 (papers/ding2022cogview2.md): reuses `kmeans` for its codebook
      clusters and the logit filters and sampler (reference_impls/cogview2.py).
    - Attention, causal masks and sinusoidal tables come from reference_impls/attention.py
      (papers/vaswani2017attention.md); nearest-centroid lookup from reference_impls/vq.py.

Equations implemented:
    next-token factorisation   log p(x) = sum_i log p(x_i | x_<i)
    temperature                p_i proportional to exp(l_i / tau)
    top-k                      keep the k largest logits, set the rest to -inf
    top-p (nucleus)            keep the smallest set S of most likely tokens with sum_{i in S} p_i >= p
    Sandwich-LN (CogView)      x <- x + LN_out(f(LN_in(x)))  for f in {attention, FFN}
    PB-relax attention         softmax(Q K^T / sqrt(d)) =
                               softmax((Q K^T / (alpha sqrt(d)) - max(Q K^T / (alpha sqrt(d)))) * alpha)
                               (the max is taken over the keys of each query row, then detached)
    PB-relax LayerNorm         LN(x) = LN(x / max|x|)   (exact when LN's epsilon is zero)
    k-means palette (iGPT)     c_j <- mean{x : argmin_l ||x - c_l|| = j}

Notation (code -> paper):
    tokens      x_1..x_N (codebook or palette indices)   vocab_size   V (codebook size K)
    alpha       alpha (PB-relax scale)                   temperature  tau
    KVCache     cached keys/values of earlier positions (attention.KVCache, one per layer)
    prefix      text or class condition

Sampling draws one uniform number per row and inverts the cumulative distribution, so the
cached and uncached paths consume the generator identically and give the same tokens whenever
their probabilities agree (exactly so in float64).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import KVCache, TransformerBlock, causal_mask
from reference_impls.vq import distributed, nearest_code

# ----------------------------------------------------------------------------- logit filters


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (..., V); the others become -inf. Ties at the k-th value are kept."""
    k = min(k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability mass is >= p."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = mass_before >= p  # the set is complete once the mass before reaches p
    drop_sorted[..., 0] = False  # always keep the most likely token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Temperature, then top-k, then top-p, on (..., V) logits."""
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_from_probs(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The survey's one categorical draw: an index per row of (..., V) probabilities, returned as (...).

    Inverts the CDF with one uniform number per row (in float64), so two callers with the same
    probabilities and generator state draw the same index. Rows need not be normalised; an entry
    of probability 0 (a filtered token) is never drawn.
    """
    cdf = probs.to(torch.float64).reshape(-1, probs.shape[-1]).cumsum(dim=-1)  # (R, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator, dtype=torch.float64).to(cdf.device) * cdf[:, -1:]  # (R, 1)
    # first index with cdf > u: cdf[idx] > u >= cdf[idx - 1], so probs[idx] > 0
    idx = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)  # (R,)
    return idx.view(probs.shape[:-1])


def sample_from_logits(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The categorical draw on (..., V) logits: sample_from_probs(softmax(logits)) in float64, (...).

    Logits of -inf have probability 0 and are never drawn. Used by every token sampler (ar_prior,
    MaskGIT, Muse, CogView2, Make-A-Scene, Parti); discrete diffusion draws from its posterior
    probabilities with sample_from_probs directly.
    """
    return sample_from_probs(logits.double().softmax(dim=-1), generator)


# ----------------------------------------------------------------------------- PB-relaxation


def pb_relaxed_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, alpha: float = 32.0
) -> torch.Tensor:
    """CogView's PB-relaxed Eq. 1: divide the scores by alpha, subtract the row max, multiply by alpha.

    Mathematically equal to softmax(q k^T / sqrt(d)) v; it only keeps the intermediate scores small
    (the paper's remedy for fp16 overflow). Shapes as in attention.scaled_dot_product_attention.
    """
    scores = (q / (alpha * q.shape[-1] ** 0.5)) @ k.transpose(-2, -1)  # (..., N_q, N_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    scores = (scores - scores.amax(dim=-1, keepdim=True).detach()) * alpha
    return scores.softmax(dim=-1) @ v


def pb_relaxed_layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """CogView's PB-relaxed LayerNorm: LN(x / max|x|), the same function as LN(x) up to LN's epsilon."""
    return norm(x / x.abs().amax(dim=-1, keepdim=True).detach())


# ----------------------------------------------------------------------------- the model


class Block(TransformerBlock):
    """The shared transformer layer (attention.TransformerBlock) with CogView's two stabilisers as options:
    sandwich_ln=True adds Sandwich-LN; pb_relax_alpha=alpha uses PB-relaxed attention and LayerNorm."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        *,
        sandwich_ln: bool = False,
        pb_relax_alpha: float | None = None,
        cross_attention: bool = False,
    ):
        relax = pb_relax_alpha is not None
        attention = partial(pb_relaxed_attention, alpha=pb_relax_alpha) if relax else None
        super().__init__(
            dim,
            n_heads,
            cross_attention=cross_attention,
            sandwich_ln=sandwich_ln,
            attention=attention,
            layer_norm=pb_relaxed_layer_norm if relax else None,
        )


class TokenPrior(nn.Module):
    """GPT-like decoder over token indices: token + learned position embeddings, causal blocks, LM head.

    forward(tokens (B, N), context=None) -> logits (B, N, V); logits[:, i] predicts tokens[:, i + 1].
    forward_incremental(tokens (B, n), cache=None, *, context=None) -> (logits (B, n, V), cache): the
    same logits for the new positions, computed from the cached keys/values of the earlier ones;
    cache is one attention.KVCache per layer, appended to in place (a new list when None).
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        max_len: int,
        *,
        sandwich_ln: bool = False,
        pb_relax_alpha: float | None = None,
        cross_attention: bool = False,
    ):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(
            Block(dim, n_heads, sandwich_ln=sandwich_ln, pb_relax_alpha=pb_relax_alpha, cross_attention=cross_attention)
            for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)

    def _embed(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        n = tokens.shape[1]
        if start + n > self.max_len:
            raise ValueError(f"sequence length {start + n} exceeds max_len {self.max_len}")
        pos = torch.arange(start, start + n, device=tokens.device)
        return self.tok_emb(tokens) + self.pos_emb(pos)  # (B, n, D)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(tokens, 0)  # (B, N, D)
        mask = causal_mask(tokens.shape[1], tokens.device)
        for block in self.blocks:
            x = block(x, mask=mask, context=context)
        return self.head(self.ln_f(x))  # (B, N, V)

    def forward_incremental(
        self, tokens: torch.Tensor, cache: list[KVCache] | None = None, *, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[KVCache]]:
        cache = [KVCache() for _ in self.blocks] if cache is None else cache
        start, n = len(cache[0]), tokens.shape[1]
        x = self._embed(tokens, start)  # (B, n, D)
        mask = causal_mask(start + n, tokens.device)[start:]  # (n, start + n): new rows of the causal mask
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x = block(x, mask=mask, cache=layer_cache, context=context)  # appends this layer's k, v
        return self.head(self.ln_f(x)), cache


# ----------------------------------------------------------------------------- training and sampling


def next_token_loss(model: TokenPrior, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of -log p(x_i | x_<i) over positions 1..N-1 of (B, N) tokens."""
    logits = model(tokens[:, :-1], context=context)  # (B, N-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


@torch.no_grad()
def sample(
    model: TokenPrior,
    prefix: torch.Tensor,
    n_new: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    vocab_range: tuple[int, int] | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Extend prefix (B, P >= 1) by n_new tokens, one at a time; returns (B, P + n_new).

    vocab_range=(lo, hi) restricts the draws to ids in [lo, hi) (e.g. image tokens after a text prompt).
    use_cache=False recomputes the whole sequence at every step (the slow reference path).
    """
    seq = prefix
    cache = None
    if use_cache:
        logits, cache = model.forward_incremental(prefix, None, context=context)
    for step in range(n_new):
        if not use_cache:
            logits = model(seq, context=context)
        last = logits[:, -1]  # (B, V)
        if vocab_range is not None:
            allowed = torch.zeros(last.shape[-1], dtype=torch.bool, device=last.device)
            allowed[vocab_range[0] : vocab_range[1]] = True
            last = last.masked_fill(~allowed, float("-inf"))
        nxt = sample_from_logits(filter_logits(last, temperature, top_k, top_p), generator)  # (B,)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if use_cache and step < n_new - 1:
            logits, cache = model.forward_incremental(nxt[:, None], cache, context=context)
    return seq


# ----------------------------------------------------------------------------- token sequences


def raster_flatten(grid: torch.Tensor) -> torch.Tensor:
    """(B, H, W) token grid -> (B, H*W) in raster order: row by row, left to right (iGPT's identity permutation)."""
    return grid.reshape(grid.shape[0], -1)


def raster_unflatten(seq: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of raster_flatten: (B, H*W) -> (B, H, W)."""
    return seq.reshape(seq.shape[0], h, w)


def text_image_sequence(text_tokens: torch.Tensor, image_tokens: torch.Tensor, text_vocab: int) -> torch.Tensor:
    """CogView's single stream [text; image]: image ids are shifted past the text vocabulary.

    text_tokens (B, L) in [0, text_vocab), image_tokens (B, H*W) in [0, K) -> (B, L + H*W) in [0, text_vocab + K).
    """
    return torch.cat([text_tokens, image_tokens + text_vocab], dim=1)


# ----------------------------------------------------------------------------- k-means palettes


def kmeans(
    x: torch.Tensor,
    k: int,
    n_iters: int = 20,
    generator: torch.Generator | None = None,
    *,
    sharded: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on rows of x (N, D): returns (centroids (k, D), labels (N,)).

    Initialised from k distinct random rows; an emptied cluster keeps its previous centroid.
    Used for Image GPT's colour palette and CogView2's codebook clusters.

    `sharded=True` (under torch.distributed): x holds this rank's share of the rows. The rows of
    every rank are gathered (in rank order) and clustered with the same generator on every rank,
    so N processes get the centroids of one process fed all the rows; the labels returned are
    those of the local rows. Without it (the default) x is clustered as given, as callers whose
    rows are already the same on every rank need (a codebook, a gathered reservoir).
    """
    local = x.shape[0]
    if sharded and distributed():
        x, start = _gather_rows(x)
    else:
        start = 0
    idx = torch.randperm(x.shape[0], generator=generator)[:k]
    centroids = x[idx].clone()  # (k, D)
    for _ in range(n_iters):
        labels = nearest_code(x, centroids)  # (N,)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)[:, None]  # (k, 1)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids, nearest_code(x[start : start + local], centroids)


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows (N_r, D) concatenated in rank order, and where this rank's rows start."""
    dist = torch.distributed
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]]))
    most = int(max(sizes))  # gloo gathers equal sizes: pad each rank's rows, then cut the padding off
    padded = torch.cat([x, x.new_zeros(most - x.shape[0], *x.shape[1:])])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    rows = torch.cat([p[: int(n)] for p, n in zip(parts, sizes, strict=True)])
    return rows, int(sum(int(n) for n in sizes[: dist.get_rank()]))


def pixels_to_tokens(images: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """iGPT tokenisation: (B, 3, H, W) RGB -> (B, H*W) raster sequence of nearest-palette-colour ids."""
    b, c, h, w = images.shape
    rgb = images.permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, 3)
    return raster_flatten(nearest_code(rgb, palette).reshape(b, h, w))


def tokens_to_pixels(tokens: torch.Tensor, palette: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W) palette ids -> (B, 3, H, W) colours."""
    return palette[raster_unflatten(tokens, h, w)].permute(0, 3, 1, 2)
