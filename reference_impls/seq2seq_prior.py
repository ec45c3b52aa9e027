"""An encoder-decoder transformer from text tokens to image tokens, with classifier-free guidance on logits.

Paper and note: Parti, Yu et al. 2022 (papers/yu2022scaling.md). Text-to-image generation as
sequence-to-sequence translation: a bidirectional encoder reads the text, a causal decoder emits
the image-token indices of a VQ tokenizer one at a time, attending to the encoder through
cross-attention. Its blocks are reused by Make-A-Scene's decoder-only prior
(reference_impls/make_a_scene.py, papers/gafni2022make.md).

Equations implemented:
    p(y | x) = prod_i p(y_i | y_<i, x)            x: text tokens, y: image tokens (raster order)
    encoder  h = Enc(x)                            full (bidirectional) self-attention over x
    decoder  logits_i = Dec(BOS, y_1 .. y_{i-1}; h) causal self-attention + cross-attention to h
    loss     L = - sum_i log p(y_i | y_<i, x)      teacher forcing, with the text replaced by the
                                                   null (all-padding) text with probability p_uncond
    guidance logits~ = logits(y_<i, null) + s (logits(y_<i, x) - logits(y_<i, null))   (guidance.guide_s)
Reranking sampled candidates by image-text similarity lives in reference_impls/clip.py (rerank).

Notation (code -> paper):
    text        x (text tokens)                image_tokens   y (ViT-VQGAN code indices)
    null text   the empty caption used for the unconditional branch
    scale       guidance scale s (s = 1: the conditional model)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions
from reference_impls.guidance import drop_condition, guide_s


class Seq2SeqPrior(nn.Module):
    """Parti's encoder-decoder: text tokens (B, M) -> next-image-token logits (B, N, K)."""

    def __init__(
        self,
        text_vocab: int,
        image_vocab: int,
        max_text: int,
        max_image: int,
        dim: int = 32,
        n_heads: int = 4,
        enc_layers: int = 2,
        dec_layers: int = 2,
        pad_id: int = 0,
    ):
        super().__init__()
        self.pad_id, self.bos_id = pad_id, image_vocab  # BOS is an extra decoder input symbol
        self.text_embed = nn.Embedding(text_vocab, dim)
        self.image_embed = nn.Embedding(image_vocab + 1, dim)
        self.register_buffer("text_pos", sinusoidal_positions(max_text, dim), persistent=False)
        self.register_buffer("image_pos", sinusoidal_positions(max_image, dim), persistent=False)
        self.encoder = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(TransformerBlock(dim, n_heads, cross_attention=True) for _ in range(dec_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, image_vocab)

    def null_text(self, text: torch.Tensor) -> torch.Tensor:
        """The empty caption: every text position set to padding. (B, M) -> (B, M)."""
        return torch.full_like(text, self.pad_id)

    def encode(self, text: torch.Tensor) -> torch.Tensor:
        h = self.text_embed(text) + self.text_pos[: text.shape[1]]  # (B, M, D)
        for block in self.encoder:
            h = block(h)  # no mask: every text token sees every other
        return h

    def decode(self, prefix: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """prefix (B, n) image tokens already chosen -> logits (B, n + 1, K) for positions 1 .. n + 1."""
        bos = torch.full((prefix.shape[0], 1), self.bos_id, dtype=torch.long, device=prefix.device)
        y = torch.cat([bos, prefix], dim=1)  # (B, n + 1), shifted right
        h = self.image_embed(y) + self.image_pos[: y.shape[1]]  # (B, n + 1, D)
        mask = causal_mask(y.shape[1], device=y.device)  # (n + 1, n + 1)
        for block in self.decoder:
            h = block(h, mask=mask, context=memory)
        return self.head(self.ln_f(h))  # (B, n + 1, K)

    def forward(self, text: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits: text (B, M), image_tokens (B, N) -> (B, N, K); row i predicts y_i."""
        return self.decode(image_tokens[:, :-1], self.encode(text))

    def loss(
        self,
        text: torch.Tensor,
        image_tokens: torch.Tensor,
        p_uncond: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Negative log-likelihood, with the caption dropped to the null text with probability p_uncond."""
        if p_uncond > 0:
            text, _ = drop_condition(text, torch.full_like(text[0], self.pad_id), p_uncond, generator)
        logits = self(text, image_tokens)  # (B, N, K)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), image_tokens.reshape(-1))

    def guided_logits(self, text: torch.Tensor, prefix: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guided logits for the next token after prefix (B, n): (B, K)."""
        cond = self.decode(prefix, self.encode(text))[:, -1]  # (B, K)
        uncond = self.decode(prefix, self.encode(self.null_text(text)))[:, -1]  # (B, K)
        return guide_s(cond, uncond, scale)

    @torch.no_grad()
    def sample(
        self,
        text: torch.Tensor,
        num_tokens: int,
        scale: float = 1.0,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling of num_tokens image tokens, guidance applied at every step. Returns (B, N).

        temperature 0 takes the argmax of the guided logits (greedy decoding).
        """
        memory = self.encode(text)  # (B, M, D), computed once per stream
        null_memory = self.encode(self.null_text(text))  # (B, M, D)
        prefix = torch.zeros(text.shape[0], 0, dtype=torch.long, device=text.device)  # (B, 0)
        for _ in range(num_tokens):
            cond = self.decode(prefix, memory)[:, -1]  # (B, K)
            logits = cond if scale == 1.0 else guide_s(cond, self.decode(prefix, null_memory)[:, -1], scale)
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                nxt = sample_from_logits(logits / temperature, generator)[:, None]  # (B, 1)
            prefix = torch.cat([prefix, nxt], dim=1)
        return prefix
