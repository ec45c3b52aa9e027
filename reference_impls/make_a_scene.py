"""Scene tokens as a second conditioning stream, and classifier-free guidance inside autoregressive sampling.

Paper and note: Make-A-Scene, Gafni et al. 2022 (papers/gafni2022make.md). One decoder-only
transformer reads [text tokens | scene tokens | image tokens] and predicts the image tokens
left to right. The scene tokens come from a VQ tokenizer of segmentation maps (VQ-SEG; not
built here: any integer grid stands in for it). Classifier-free guidance is adapted to token
sampling by running two token streams side by side: a conditional stream that starts with the
caption and an unconditional stream whose caption is replaced by padding tokens. At every step
each stream gives next-token logits, the guided logits pick one token, and that token is
appended to both streams.

Equations implemented:
    p(y | x, z) = prod_i p(y_i | x, z, y_<i)           x: text, z: scene tokens, y: image tokens
    step i:  l_c = f(x, z, y_<i),  l_u = f(pad, z, y_<i)
             l~ = l_u + s (l_c - l_u)                   (guidance.guide_s; s = 1 -> l_c)
             y_i ~ softmax(l~ / tau),  appended to both streams
    training: caption replaced by padding with probability p_uncond (guidance.drop_condition)

Notation (code -> paper):
    text      text tokens t_x               scene     scene tokens t_y (VQ-SEG)
    image     image tokens t_z              scale     guidance scale
    cond_seq / uncond_seq   the conditional and unconditional token streams
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import sample_from_logits
from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions
from reference_impls.guidance import drop_condition, guide_s

NextLogits = Callable[[torch.Tensor], torch.Tensor]  # stream (B, L) -> next-image-token logits (B, K)


def guided_ar_sample(
    next_logits: NextLogits,
    cond_seq: torch.Tensor,
    uncond_seq: torch.Tensor,
    num_tokens: int,
    scale: float,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two-stream guided sampling: cond_seq (B, L), uncond_seq (B, L') -> (tokens (B, N), both final streams).

    The streams carry their own context (caption or padding) and share every sampled token.
    temperature 0 takes the argmax of the guided logits.
    """
    tokens = []
    for _ in range(num_tokens):
        logits = guide_s(next_logits(cond_seq), next_logits(uncond_seq), scale)  # (B, K)
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
        else:
            nxt = sample_from_logits(logits / temperature, generator)[:, None]  # (B, 1)
        cond_seq = torch.cat([cond_seq, nxt], dim=1)
        uncond_seq = torch.cat([uncond_seq, nxt], dim=1)
        tokens.append(nxt)
    return torch.cat(tokens, dim=1), cond_seq, uncond_seq


class ScenePrior(nn.Module):
    """Decoder-only transformer over [text | scene | image]; predicts image tokens.

    A stream is a (B, M + S + n) integer tensor: text ids, then scene ids, then the n image ids
    chosen so far; each part has its own embedding table plus a segment embedding.
    """

    def __init__(
        self,
        text_vocab: int,
        scene_vocab: int,
        image_vocab: int,
        text_len: int,
        scene_len: int,
        image_len: int,
        dim: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        pad_id: int = 0,
    ):
        super().__init__()
        self.text_len, self.scene_len, self.pad_id = text_len, scene_len, pad_id
        self.text_embed = nn.Embedding(text_vocab, dim)
        self.scene_embed = nn.Embedding(scene_vocab, dim)
        self.image_embed = nn.Embedding(image_vocab, dim)
        self.segment = nn.Embedding(3, dim)  # 0 text, 1 scene, 2 image
        self.register_buffer("pos", sinusoidal_positions(text_len + scene_len + image_len, dim), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, image_vocab)

    def stream(self, text: torch.Tensor, scene: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Concatenate text (B, M), scene (B, S) and image (B, n) into one stream (B, M + S + n)."""
        parts = [text, scene] + ([image] if image is not None else [])
        return torch.cat(parts, dim=1)

    def null_stream(self, text: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
        """The unconditional stream: the caption replaced by padding, the scene kept."""
        return self.stream(torch.full_like(text, self.pad_id), scene)

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        m, s = self.text_len, self.scene_len
        h = (
            torch.cat(
                [
                    self.text_embed(seq[:, :m]) + self.segment.weight[0],
                    self.scene_embed(seq[:, m : m + s]) + self.segment.weight[1],
                    self.image_embed(seq[:, m + s :]) + self.segment.weight[2],
                ],
                dim=1,
            )
            + self.pos[: seq.shape[1]]
        )  # (B, L, D)
        mask = causal_mask(seq.shape[1], device=seq.device)
        for block in self.blocks:
            h = block(h, mask=mask)
        return self.ln_f(h)  # (B, L, D)

    def image_logits(self, seq: torch.Tensor) -> torch.Tensor:
        """Logits for image tokens 1 .. n + 1 from a stream holding n image tokens: (B, n + 1, K)."""
        start = self.text_len + self.scene_len - 1  # the last scene position predicts the first image token
        return self.head(self.hidden(seq)[:, start:])

    def next_logits(self, seq: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(seq)[:, -1])  # (B, K)

    def loss(
        self,
        text: torch.Tensor,
        scene: torch.Tensor,
        image: torch.Tensor,
        p_uncond: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Cross-entropy on the image tokens (B, N), with the caption dropped with probability p_uncond."""
        if p_uncond > 0:
            text, _ = drop_condition(text, torch.full_like(text[0], self.pad_id), p_uncond, generator)
        logits = self.image_logits(self.stream(text, scene, image[:, :-1]))  # (B, N, K)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), image.reshape(-1))

    @torch.no_grad()
    def sample(
        self,
        text: torch.Tensor,
        scene: torch.Tensor,
        num_tokens: int,
        scale: float = 1.0,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Guided sampling of num_tokens image tokens (B, N) with a conditional and an unconditional stream."""
        tokens, _, _ = guided_ar_sample(
            self.next_logits,
            self.stream(text, scene),
            self.null_stream(text, scene),
            num_tokens,
            scale,
            temperature,
            generator,
        )
        return tokens
