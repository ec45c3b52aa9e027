"""AudioLM: three staged token language models, semantic -> coarse acoustic -> fine acoustic.

Paper and note:
    - AudioLM, Borsos et al. 2023 (papers/borsos2023audiolm.md): the hierarchical modelling
      of semantic and acoustic tokens.
    The acoustic tokens are the levels of a residual vector quantiser (reference_impls/residual_vq.py,
    SoundStream-style, one codebook per level); attention and positions come from attention.py.

Tokens:
    semantic  s (B, T_s)         k-means ids of a self-supervised speech model (here: given)
    acoustic  a (B, T_a, Q)      RVQ codes, T_a = rate * T_s (rate = 2 in the paper)
    coarse    a[..., :Q']        the first Q' levels        fine  a[..., Q':]   the other Q - Q'
    Acoustic tokens are flattened time-major, level-minor: a_1^1 .. a_1^Q' a_2^1 .. ; each level q
    has its own id range, offset = K_s + q K_a, so one vocabulary serves all stages.

Stages (each a decoder-only causal transformer over one sequence):
    1  semantic   p(s_t | s_{<t})                      sequence  s
    2  coarse     p(a_t^q | s, a_{<t}^{<=Q'}, a_t^{<q})   sequence  [s ; coarse],  loss on coarse
    3  fine       p(a_t^q | coarse, a_{<t}^{>Q'}, a_t^{<q}) sequence  [coarse ; fine], loss on fine
    With the prefix first and a causal mask, stage k sees all earlier-stage tokens and its own
    past only. Stage 3 does not read the semantic tokens.

Notation (code -> paper):
    q_coarse    Q'                      rate     ratio of acoustic to semantic frame rates
    K_s, K_a    semantic / acoustic codebook sizes

Left out: w2v-BERT and k-means (semantic ids are inputs), the SoundStream codec itself, the
windowing of the fine stage into short chunks, and model sizes; each stage is one block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions


def split_coarse_fine(acoustic: torch.Tensor, q_coarse: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, Q) RVQ codes -> coarse (B, T, Q') and fine (B, T, Q - Q')."""
    return acoustic[..., :q_coarse], acoustic[..., q_coarse:]


def flatten_levels(codes: torch.Tensor, first_level: int, k_sem: int, k_ac: int) -> torch.Tensor:
    """(B, T, q) codes of levels first_level .. first_level+q-1 -> (B, T * q) vocabulary ids,
    time-major and level-minor, each level shifted into its own range."""
    q = codes.shape[-1]
    offsets = k_sem + k_ac * (first_level + torch.arange(q, device=codes.device))  # (q,)
    return (codes + offsets).reshape(codes.shape[0], -1)


def unflatten_levels(ids: torch.Tensor, first_level: int, q: int, k_sem: int, k_ac: int) -> torch.Tensor:
    """Inverse of flatten_levels: (B, T * q) -> (B, T, q) codes."""
    offsets = k_sem + k_ac * (first_level + torch.arange(q, device=ids.device))
    return ids.reshape(ids.shape[0], -1, q) - offsets


@dataclass
class StageSequence:
    tokens: torch.Tensor  # (B, L) vocabulary ids: conditioning prefix then this stage's tokens
    target: torch.Tensor  # (B, L) bool: positions whose token this stage predicts (and is trained on)


def stage_sequence(
    stage: int, semantic: torch.Tensor, acoustic: torch.Tensor, q_coarse: int, k_sem: int, k_ac: int
) -> StageSequence:
    """Build the sequence of stage 1, 2 or 3 from semantic (B, T_s) and acoustic (B, T_a, Q)."""
    coarse, fine = split_coarse_fine(acoustic, q_coarse)
    if stage == 1:
        parts = [(semantic, True)]
    elif stage == 2:
        parts = [(semantic, False), (flatten_levels(coarse, 0, k_sem, k_ac), True)]
    elif stage == 3:
        parts = [(flatten_levels(coarse, 0, k_sem, k_ac), False), (flatten_levels(fine, q_coarse, k_sem, k_ac), True)]
    else:
        raise ValueError("stage must be 1, 2 or 3")
    tokens = torch.cat([p for p, _ in parts], dim=1)
    target = torch.cat([torch.full_like(p, flag, dtype=torch.bool) for p, flag in parts], dim=1)
    return StageSequence(tokens, target)


class StageLM(nn.Module):
    """A decoder-only causal transformer block over the shared vocabulary (plus a start token)."""

    def __init__(self, vocab: int, max_len: int, dim: int = 32, n_heads: int = 4):
        super().__init__()
        self.vocab = vocab
        self.tok = nn.Embedding(vocab + 1, dim)  # last id = start token
        self.register_buffer("pos", sinusoidal_positions(max_len, dim))
        self.block = TransformerBlock(dim, n_heads)  # the survey's one layer (attention.py)
        self.head = nn.Linear(dim, vocab)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) -> input embeddings (B, L, dim) of the right-shifted sequence."""
        b, n = tokens.shape
        start = torch.full((b, 1), self.vocab, dtype=tokens.dtype, device=tokens.device)
        return self.tok(torch.cat([start, tokens[:, :-1]], dim=1)) + self.pos[:n]

    def forward_embeddings(self, h: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) -> logits (B, L, vocab); logits[:, i] predicts tokens[:, i]."""
        h = self.block(h, mask=causal_mask(h.shape[1], h.device))  # (B, L, dim)
        return self.head(h)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.forward_embeddings(self.embed(tokens))

    def loss(self, seq: StageSequence) -> torch.Tensor:
        """Cross-entropy on this stage's own tokens only (the prefix is conditioning)."""
        logits = self(seq.tokens)
        return F.cross_entropy(logits[seq.target], seq.tokens[seq.target])
