"""CLIP: a symmetric contrastive (InfoNCE) loss with a learned temperature, and reranking by similarity.

Paper and note: CLIP, Radford et al. 2021 (papers/radford2021learning.md), Sec. 2.3 and the
pseudocode of Figure 3. Reused by GLIDE's CLIP guidance (papers/nichol2022glide.md), by unCLIP
(papers/ramesh2022hierarchical.md), by StyleCLIP (papers/patashnik2021styleclip.md) and by
Parti's reranking of samples (papers/yu2022scaling.md).

Equations implemented (Figure 3 of the paper):
    I_e = l2_normalise(image_encoder(I) W_i),   T_e = l2_normalise(text_encoder(T) W_t)
    logits = exp(t) * I_e T_e^T                         (N x N, row n: image n against every text)
    loss = (CE(logits, labels, axis=0) + CE(logits, labels, axis=1)) / 2,   labels = arange(N)
    t is a learned log-temperature, initialised to log(1 / 0.07); exp(t) is clipped at 100.
Reranking (as used by DALL-E and Parti): score each candidate image by the cosine similarity of
its embedding with the text embedding, and keep the candidates in decreasing order of score.

Notation (code -> paper):
    image_emb   I_e        text_emb   T_e        logit_scale   exp(t)
    log_temp    t (the learned temperature parameter, in log space)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def clip_logits(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """exp(t) * cos(I_n, T_m) for every pair: image_emb (N, D), text_emb (M, D) -> (N, M)."""
    image_emb = F.normalize(image_emb, dim=-1)  # (N, D)
    text_emb = F.normalize(text_emb, dim=-1)  # (M, D)
    return logit_scale * image_emb @ text_emb.t()  # (N, M)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE: mean of image->text and text->image cross-entropy; pair n matches pair n."""
    logits = clip_logits(image_emb, text_emb, logit_scale)  # (N, N)
    labels = torch.arange(logits.shape[0], device=logits.device)  # (N,)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def cosine_similarity(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity: image_emb (N, D), text_emb (N, D) or (D,) -> (N,)."""
    return (F.normalize(image_emb, dim=-1) * F.normalize(text_emb, dim=-1)).sum(-1)


def rerank(candidate_emb: torch.Tensor, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Order candidates by similarity with one text: candidate_emb (K, D), text_emb (D,).

    Returns (order (K,), scores (K,)): order[0] is the best candidate, scores are in candidate order.
    """
    scores = cosine_similarity(candidate_emb, text_emb)  # (K,)
    return torch.argsort(scores, descending=True), scores


class ToyImageEncoder(nn.Module):
    """A two-layer MLP on flattened images, standing in for CLIP's ResNet or ViT: (B, C, H, W) -> (B, D)."""

    def __init__(self, in_dim: int, width: int, embed_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))
        self.proj = nn.Linear(width, embed_dim, bias=False)  # W_i

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(images))  # (B, D)


class ToyTextEncoder(nn.Module):
    """Mean-pooled token embeddings plus an MLP, standing in for CLIP's text transformer: (B, L) -> (B, D)."""

    def __init__(self, vocab_size: int, width: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.proj = nn.Linear(width, embed_dim, bias=False)  # W_t

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.mlp(self.embed(tokens).mean(dim=1)))  # (B, D)


class CLIP(nn.Module):
    """Two encoders into one embedding space plus the learned temperature of Figure 3."""

    def __init__(
        self, image_in_dim: int, vocab_size: int, width: int = 32, embed_dim: int = 16, max_scale: float = 100.0
    ):
        super().__init__()
        self.image_encoder = ToyImageEncoder(image_in_dim, width, embed_dim)
        self.text_encoder = ToyTextEncoder(vocab_size, width, embed_dim)
        self.log_temp = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # t
        self.max_scale = max_scale

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_temp.exp().clamp(max=self.max_scale)  # exp(t), clipped at 100

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)  # (B, D), unit norm

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(tokens), dim=-1)  # (B, D), unit norm

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The training loss on a batch of N matching (image, text) pairs."""
        return clip_loss(self.image_encoder(images), self.text_encoder(tokens), self.logit_scale)
