"""CogView2's cluster sampling and local parallel autoregressive (LoPAR) refinement.

Papers and notes:
    - CogView2, Ding et al. 2022 (papers/ding2022cogview2.md): cluster sampling over a
      k-means partition of the image-token vocabulary, and LoPAR, which fills a high-resolution
      token grid window by window, all windows in parallel, in a fixed number of steps.
    - k-means comes from reference_impls/ar_prior.py (papers/chen2020generative.md uses it for
      the colour palette); token filtering from the same module.

Cluster sampling (one categorical draw in two stages):
    P(c) = sum_{v : cluster(v) = c} p(v)             cluster probability = sum of its members'
    c ~ P restricted to the top-k clusters, renormalised
    v ~ p(v | c) proportional to p(v) 1[cluster(v) = c] (optionally re-tempered)

LoPAR schedule: the (H, W) grid is cut into (b_h, b_w) windows; the token at local coordinates
(x, y) of every window is fixed at step x + y. Each step runs the model once on the whole grid,
samples every position in parallel and keeps the samples only where the step number matches.
The number of model calls is warmup + b_h + b_w - 1, whatever H and W are.

Notation (code -> paper):
    labels        the cluster of each image token           n_clusters   number of k-means clusters
    top_k         top-k over clusters (not tokens)          block        the local window size
    predict       the fine-tuned super-resolution transformer, seen as tokens -> logits
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from reference_impls.ar_prior import filter_logits, kmeans, sample_from_logits


def cluster_codebook(
    codebook: torch.Tensor, n_clusters: int, n_iters: int = 20, generator: torch.Generator | None = None
) -> torch.Tensor:
    """k-means over the embedding vectors (V, D) of the image tokens: cluster label per token, (V,)."""
    _, labels = kmeans(codebook, n_clusters, n_iters, generator)
    return labels


def cluster_probs(probs: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """(B, V) token probabilities -> (B, n_clusters): each cluster's probability is the sum of its members'."""
    return torch.zeros(probs.shape[0], n_clusters, dtype=probs.dtype).scatter_add_(1, labels.expand_as(probs), probs)


def cluster_sample(
    logits: torch.Tensor,
    labels: torch.Tensor,
    n_clusters: int,
    top_k: int,
    temperature: float = 1.0,
    inner_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a cluster among the top_k most probable clusters, then a token inside it.

    logits (B, V), labels (V,) in [0, n_clusters) -> (tokens (B,), clusters (B,)).
    """
    probs = (logits / temperature).double().softmax(dim=-1)  # (B, V)
    cprobs = cluster_probs(probs, labels, n_clusters)  # (B, C)
    cluster_logits = filter_logits(cprobs.log(), top_k=top_k)  # top-k over clusters
    clusters = sample_from_logits(cluster_logits, generator)  # (B,)
    inside = labels[None, :] == clusters[:, None]  # (B, V)
    token_logits = (logits / temperature).masked_fill(~inside, float("-inf")) / inner_temperature
    return sample_from_logits(token_logits, generator), clusters


def lopar_schedule(h: int, w: int, block: tuple[int, int]) -> torch.Tensor:
    """(H, W) step index of every position: local row + local column inside its (b_h, b_w) window."""
    bh, bw = block
    rows = torch.arange(h)[:, None] % bh
    cols = torch.arange(w)[None, :] % bw
    return rows + cols  # values 0 .. b_h + b_w - 2


def lopar_refine(
    predict: Callable[[torch.Tensor], torch.Tensor],
    init_tokens: torch.Tensor,
    block: tuple[int, int],
    draw: Callable[[torch.Tensor], torch.Tensor],
    warmup: int = 0,
) -> tuple[torch.Tensor, int]:
    """LoPAR: refine an (B, H, W) token grid in warmup + b_h + b_w - 1 parallel steps.

    predict(tokens (B, H, W)) -> logits (B, H, W, V); draw(logits (M, V)) -> tokens (M,).
    Warmup steps resample every position; step s then fixes the positions whose schedule is s.
    Returns (tokens, number of predict calls).
    """
    b, h, w = init_tokens.shape
    tokens = init_tokens.clone()
    schedule = lopar_schedule(h, w, block)  # (H, W)
    calls = 0
    for _ in range(warmup):
        logits = predict(tokens)
        calls += 1
        tokens = draw(logits.reshape(b * h * w, -1)).reshape(b, h, w)
    for step in range(int(schedule.max()) + 1):
        logits = predict(tokens)  # (B, H, W, V)
        calls += 1
        new = draw(logits.reshape(b * h * w, -1)).reshape(b, h, w)
        fix = (schedule == step).expand(b, h, w)
        tokens = torch.where(fix, new, tokens)
    return tokens, calls


def lopar_attention_mask(h: int, w: int, block: tuple[int, int]) -> torch.Tensor:
    """(H*W, H*W) bool in raster order: query p may see key q iff they share a window and q is fixed
    at an earlier step than p (or q == p, so no row is empty). All windows work in parallel."""
    bh, bw = block
    r, c = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    win = ((r // bh) * ((w + bw - 1) // bw) + c // bw).flatten()  # window id per position
    step = lopar_schedule(h, w, block).flatten()
    same = win[:, None] == win[None, :]
    earlier = step[None, :] < step[:, None]
    return (same & earlier) | torch.eye(h * w, dtype=torch.bool)
