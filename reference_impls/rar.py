"""RAR: a causal token prior trained on randomly permuted orders, annealed to raster order.

Paper and note: Randomized Autoregressive Visual Generation, Yu et al. 2025
(papers/yu2025randomized.md). Official code: bytedance/1d-tokenizer (modeling/rar.py,
utils/train_utils.py get_rar_random_ratio, configs/training/generator/rar.yaml).

Training sees each image's token sequence in a random order with probability r and in raster
order otherwise; r falls linearly from 1 to 0 during training, so the model ends as a plain
raster autoregressive prior and samples exactly like one (left to right, KV-cache compatible).

Equations implemented:
    permuted objective      log p(x) = sum_j log p(x_{pi(j)} | c, x_{pi(1)}, .., x_{pi(j-1)})
    order                   pi ~ Uniform(S_N) with probability r, pi = identity otherwise
    annealing               r(t) = 1 for t < t_s;  1 - (t - t_s) / (t_e - t_s) for t_s <= t <= t_e;  0 for t > t_e
    position of input j     e_pos(pi(j)) (where the token is) + e_target(pi(j + 1)) (where the next one goes)
    guidance schedule       s_i = 1 + (s - 1) (1 - cos(pi (i / N)^q)) / 2,  l~ = l_u + s_i (l_c - l_u)

Notation (code -> paper / official code):
    orders        pi (the permutation)             ratio        r (random_ratio)
    anneal_start  t_s = randomness_anneal_start    anneal_end   t_e = randomness_anneal_end
    target_pos    target_aware_pos_embed           power        q = guidance_scale_pow
    null_label    the class-drop id (none_condition_id)

Conditioning (two variants, RARPrior(adaln=...)):
    adaln=False  the class enters as the first token only (attention.TransformerBlock).
    adaln=True   the released form (modeling/rar.py Block, FinalLayer): the class is also the first
                 token, and each block's norms are modulated per position by
                 c_j = e_class + e_step(j)  (timesteps_embeddings), DiT-style adaLN with gates,
                 through var.AdaLNBlock / var.AdaLNBeforeHead; initialised at zero (adaLN-Zero), as
                 the release does ("init for adaln-zero").
    The sampler's defaults (scale 16.0, power 2.75) are rar.yaml's values for the released adaLN
    model; the first-token variant has no released value.
Simplification: QK-norm of the official attention is left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.attention import TransformerBlock, causal_mask
from reference_impls.guidance import drop_condition, guide_s
from reference_impls.var import AdaLNBeforeHead, AdaLNBlock


def random_ratio(step: int, *, anneal_start: int, anneal_end: int) -> float:
    """r(t): the probability of a random order at training step t (train_utils.get_rar_random_ratio)."""
    if step < anneal_start:
        return 1.0
    if step > anneal_end:
        return 0.0
    return 1.0 - (step - anneal_start) / (anneal_end - anneal_start)


def sample_orders(batch: int, n: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N) orders: a uniform random permutation with probability ratio, the raster order otherwise."""
    random = torch.rand(batch, generator=generator) < ratio  # (B,)
    perms = torch.rand(batch, n, generator=generator).argsort(dim=1)  # uniform permutations
    return torch.where(random[:, None], perms, torch.arange(n).expand(batch, n))


def permute(x: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) -> x[b, orders[b, j]] at step j."""
    index = orders.view(*orders.shape, *([1] * (x.dim() - 2))).expand(*orders.shape, *x.shape[2:])
    return x.gather(1, index)


class RARPrior(nn.Module):
    """Causal prior over N tokens in any order: forward(tokens (B, N) raster, labels (B,), orders (B, N))
    -> logits (B, N, V) where logits[:, j] predicts tokens[:, orders[:, j]]. Label n_classes is the null class."""

    def __init__(
        self,
        *,
        vocab_size: int,
        n_classes: int,
        n_tokens: int,
        dim: int,
        n_layers: int,
        n_heads: int,
        target_aware: bool = True,
        adaln: bool = False,
    ):
        super().__init__()
        self.n_tokens, self.null_label, self.target_aware, self.adaln = n_tokens, n_classes, target_aware, adaln
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.cls_emb = nn.Embedding(n_classes + 1, dim)
        self.pos = nn.Parameter(torch.randn(n_tokens + 1, dim) * 0.02)  # row n_tokens: the class token
        self.target_pos = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)
        if adaln:
            self.step_emb = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)  # timesteps_embeddings
            self.blocks = nn.ModuleList(AdaLNBlock(dim, n_heads, cond_dim=dim) for _ in range(n_layers))
            self.ln_f = AdaLNBeforeHead(dim, dim)
        else:
            self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
            self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape  # n <= n_tokens raster-ordered tokens known; the steps are orders[:, :n + 1]
        steps = min(n + 1, self.n_tokens)
        seen = permute(tokens, orders[:, :n])[:, : steps - 1]  # (B, steps - 1) tokens in the training order
        x = torch.cat([self.cls_emb(labels)[:, None], self.tok_emb(seen)], dim=1)  # (B, steps, D)
        where = torch.cat([torch.full((b, 1), self.n_tokens, device=tokens.device), orders[:, : steps - 1]], dim=1)
        x = x + self.pos[where]  # where each input token is (the class has its own row)
        if self.target_aware:
            x = x + self.target_pos[orders[:, :steps]]  # where the token predicted from this input goes
        mask = causal_mask(steps, tokens.device)
        if self.adaln:
            cond = self.cls_emb(labels)[:, None] + self.step_emb[:steps]  # (B, steps, D), one per position
            for block in self.blocks:
                x = block(x, cond, mask=mask)
            return self.head(self.ln_f(x, cond))  # (B, steps, V)
        for block in self.blocks:
            x = block(x, mask=mask)  # TransformerBlock returns the hidden state
        return self.head(self.ln_f(x))  # (B, steps, V)


def rar_loss(
    model: RARPrior,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    ratio: float,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Cross-entropy of the permuted sequence, the order drawn with probability `ratio` of being random."""
    orders = sample_orders(tokens.shape[0], tokens.shape[1], ratio, generator)
    labels, _ = drop_condition(labels, torch.tensor(model.null_label, device=labels.device), p_uncond, generator)
    logits = model(tokens, labels, orders)  # (B, N, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), permute(tokens, orders).reshape(-1))


def guidance_schedule(step: int, n: int, *, scale: float, power: float) -> float:
    """rar.py's guidance scale at step i of n: 1 + (scale - 1) (1 - cos(pi (i / n)^power)) / 2."""
    return 1.0 + (scale - 1.0) * (1.0 - math.cos(math.pi * (step / n) ** power)) / 2.0


@torch.no_grad()
def sample(
    model: RARPrior,
    labels: torch.Tensor,
    *,
    scale: float = 16.0,
    power: float = 2.75,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Raster-order sampling with the cosine-ramped guidance: (B, N) tokens.

    scale 16.0 and power 2.75 are rar.yaml's values for the released (adaLN) RAR-B.
    """
    b, n = labels.shape[0], model.n_tokens
    raster = torch.arange(n, device=labels.device).expand(2 * b, n)
    both = torch.cat([labels, torch.full_like(labels, model.null_label)])
    tokens = torch.zeros(b, 0, dtype=torch.long, device=labels.device)
    for i in range(n):
        logits = model(tokens.repeat(2, 1), both, raster)[:, -1]  # (2B, V)
        logits = guide_s(logits[:b], logits[b:], guidance_schedule(i, n, scale=scale, power=power))
        tokens = torch.cat([tokens, sample_from_logits(logits / temperature, generator)[:, None]], dim=1)
    return tokens
