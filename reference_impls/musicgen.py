"""MusicGen: codebook interleaving patterns over K parallel RVQ streams, and one causal LM over the steps.

Paper and note:
    - MusicGen, Copet et al. 2023, "Simple and Controllable Music Generation" (papers/copet2023simple.md):
      the codebook interleaving patterns, as released in facebookresearch/audiocraft
      (audiocraft/modules/codebooks_patterns.py, config/model/lm/musicgen_lm.yaml).
    The streams are the levels of a residual quantiser (reference_impls/residual_vq.py, an EnCodec
    tokenizer: reference_impls/encodec.py); the transformer layer and causal mask are
    reference_impls/attention.py.

A pattern lists, for each sequence step s, the coordinates (t, q) (frame t, codebook q) predicted at s.
With codes C in {0..V-1}^{K x T}:
    parallel    step s holds (s, q) for all q                        T steps
    delay       step s holds (s - d_q, q) for 0 <= s - d_q < T        T + max_q d_q steps
                (d_q = q, the released [0, 1, 2, 3]: T + K - 1 steps)
    flattened   step s = K t + q holds (t, q)                        K T steps
    coarse-first  T steps of (t, 0), then T steps holding (t, q) for all q >= 1      2 T steps
                (audiocraft's CoarseFirstPattern, the VALL-E-like order)
A step's empty slots hold a special token. The LM reads the K tokens of each earlier step (summed
embeddings), and predicts the K tokens of the current step with K heads:
    p(S) = prod_s prod_{(t, q) in step s} p(C[q, t] | steps < s)
Under the delay pattern (t, q) is predicted at step t + q, one step after (t, q - 1): each level
conditions on the coarser levels of its own frame at the cost of K - 1 extra steps. Under the
parallel pattern the levels of one frame are predicted independently of each other.

Notation (code -> paper):
    codes (B, K, T)     the K codebook streams of T frames      delays   d_q    special   the empty-slot token
    steps               sequence steps s                        heads    one linear head per codebook

Left out: the T5 text encoder and cross-attention, chroma (melody) conditioning, classifier-free
guidance and the released model sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_positions


@dataclass(frozen=True)
class Pattern:
    steps: tuple[tuple[tuple[int, int], ...], ...]  # for each step s, the (t, q) predicted at s
    frames: int  # T
    codebooks: int  # K

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def step_of(self) -> torch.Tensor:
        """(K, T) long: the step at which each (t, q) is predicted."""
        out = torch.full((self.codebooks, self.frames), -1, dtype=torch.long)
        for s, coords in enumerate(self.steps):
            for t, q in coords:
                out[q, t] = s
        return out


def delay_pattern(frames: int, delays: list[int]) -> Pattern:
    """Codebook q shifted right by d_q steps; delays must start at 0 and not decrease."""
    if delays[0] != 0 or sorted(delays) != list(delays):
        raise ValueError(f"delays {delays} must start at 0 and not decrease; expected e.g. [0, 1, 2, 3]")
    steps = tuple(
        tuple((s - d, q) for q, d in enumerate(delays) if 0 <= s - d < frames) for s in range(frames + max(delays))
    )
    return Pattern(steps, frames, len(delays))


def parallel_pattern(frames: int, codebooks: int) -> Pattern:
    return delay_pattern(frames, [0] * codebooks)


def flattened_pattern(frames: int, codebooks: int) -> Pattern:
    return Pattern(tuple(((t, q),) for t in range(frames) for q in range(codebooks)), frames, codebooks)


def coarse_first_pattern(frames: int, codebooks: int) -> Pattern:
    first = tuple(((t, 0),) for t in range(frames))
    rest = tuple(tuple((t, q) for q in range(1, codebooks)) for t in range(frames))
    return Pattern(first + rest, frames, codebooks)


def build_sequence(codes: torch.Tensor, pattern: Pattern, special: int) -> torch.Tensor:
    """(B, K, T) codes -> (B, K, S) interleaved: [b, q, s] = codes[b, q, t] if (t, q) is at step s, else special."""
    b, k, t = codes.shape
    if (k, t) != (pattern.codebooks, pattern.frames):
        raise ValueError(f"codes have K={k}, T={t}; the pattern expects K={pattern.codebooks}, T={pattern.frames}")
    out = codes.new_full((b, k, pattern.num_steps), special)
    step = pattern.step_of()  # (K, T)
    q_idx = torch.arange(k)[:, None].expand(k, t)
    out[:, q_idx, step] = codes
    return out


def revert_sequence(seq: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Inverse of build_sequence: (B, K, S) -> (B, K, T)."""
    step = pattern.step_of()  # (K, T)
    q_idx = torch.arange(pattern.codebooks)[:, None].expand_as(step)
    return seq[:, q_idx, step]


def valid_mask(pattern: Pattern) -> torch.Tensor:
    """(K, S) bool: True where a step holds a real code (False at special slots)."""
    mask = torch.zeros(pattern.codebooks, pattern.num_steps, dtype=torch.bool)
    step = pattern.step_of()
    mask[torch.arange(pattern.codebooks)[:, None].expand_as(step), step] = True
    return mask


class InterleavedLM(nn.Module):
    """Causal transformer over pattern steps: step inputs are the sum of K code embeddings, K output heads.

    forward(seq (B, K, S)) -> logits (B, K, S, V); logits[:, q, s] predicts seq[:, q, s] from steps < s.
    Each codebook has its own embedding table of V + 2 rows (V codes, special, start).
    """

    def __init__(
        self, *, codebooks: int, vocab: int, dim: int = 32, depth: int = 2, n_heads: int = 4, max_steps: int = 256
    ):
        super().__init__()
        self.codebooks, self.vocab = codebooks, vocab
        self.special, self.start = vocab, vocab + 1
        self.emb = nn.ModuleList(nn.Embedding(vocab + 2, dim) for _ in range(codebooks))
        self.register_buffer("pos", sinusoidal_positions(max_steps, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, vocab) for _ in range(codebooks))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        b, k, s = seq.shape
        inp = torch.cat([seq.new_full((b, k, 1), self.start), seq[..., :-1]], dim=-1)  # shift right by one step
        x = sum(self.emb[q](inp[:, q]) for q in range(k)) + self.pos[:s]  # (B, S, D)
        mask = causal_mask(s, seq.device)
        for block in self.blocks:
            x = block(x, mask=mask)
        x = self.ln(x)
        return torch.stack([head(x) for head in self.heads], dim=1)  # (B, K, S, V)

    def loss(self, codes: torch.Tensor, pattern: Pattern) -> torch.Tensor:
        """Cross-entropy over the real codes of the interleaved sequence (special slots are not targets)."""
        seq = build_sequence(codes, pattern, self.special)
        logits = self(seq)  # (B, K, S, V)
        m = valid_mask(pattern).expand(seq.shape[0], -1, -1)
        return F.cross_entropy(logits[m], seq[m])
