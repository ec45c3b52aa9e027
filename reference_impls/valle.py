"""VALL-E: a codec language model. AR over the first RVQ level, non-AR over each further level given the ones below.

Paper and note:
    - VALL-E, Wang et al. 2023, "Neural Codec Language Models are Zero-Shot Text to Speech
      Synthesizers" (papers/wang2023neural.md): TTS as conditional language modelling over the
      residual-VQ codes of a neural codec (reference_impls/encodec.py), prompted by phonemes and by
      the codes of a short enrolled recording.
    The AR stage is the shared token prior reference_impls/ar_prior.py (TokenPrior, its categorical
    draw); the NAR stage is built from reference_impls/attention.py.

Factorisation (levels numbered 1..Q; x: phonemes, C~: the prompt's codes, c: the target's codes):
    AR    p(c_{:,1} | x, C~_{:,1}) = prod_t p(c_{t,1} | c_{<t,1}, C~_{:,1}, x)            causal, one frame a step
    NAR   p(c_{:,2:Q} | x, C~, c_{:,1}) = prod_{j=2}^{Q} p(c_{:,j} | c_{:,<j}, C~, x)      all frames of level j at once
    AR sequence   [x ; C~_{:,1} ; c_{:,1} ; <eos>] in one vocabulary: phoneme ids, then code ids (+P), then <eos>;
                  the loss counts only the target codes and <eos>, whose position also fixes the duration.
    NAR input     x embedded, then every frame's summed embeddings: all Q levels for the prompt, levels < j
                  for the target; a learned embedding of j is added; no attention mask. Level j's logits
                  are read at the target frames. Generation: one AR draw per frame, then Q - 1 NAR passes.

Notation (code -> paper):
    num_phonemes  phoneme vocabulary (P)       levels     Q codebooks        codebook_size   K
    prompt        C~ (B, T', Q)                target     c (B, T, Q)        level  j (0-based here: 1..Q-1)

Left out: the G2P front end, EnCodec itself, separate positional tables per segment, adaptive layer
norm for the stage (a stage embedding is added instead), nucleus sampling settings and the sizes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls.ar_prior import TokenPrior, sample
from reference_impls.attention import TransformerBlock, sinusoidal_positions


class ValleAR(nn.Module):
    """Causal LM over [phonemes ; prompt level-1 codes ; target level-1 codes ; eos] (ar_prior.TokenPrior)."""

    def __init__(
        self,
        *,
        num_phonemes: int,
        codebook_size: int,
        dim: int = 32,
        depth: int = 2,
        n_heads: int = 4,
        max_len: int = 128,
    ):
        super().__init__()
        self.num_phonemes, self.codebook_size = num_phonemes, codebook_size
        self.eos = num_phonemes + codebook_size
        self.prior = TokenPrior(num_phonemes + codebook_size + 1, dim, depth, n_heads, max_len)

    def sequence(
        self,
        phonemes: torch.Tensor,
        prompt_first: torch.Tensor,
        target_first: torch.Tensor | None = None,
        eos: bool = True,
    ) -> torch.Tensor:
        """(B, L) phonemes, (B, T') prompt level-1 codes, (B, T) target level-1 codes -> (B, L + T' + T [+1]) ids."""
        parts = [phonemes, prompt_first + self.num_phonemes]
        if target_first is not None:
            parts.append(target_first + self.num_phonemes)
        if eos:
            parts.append(phonemes.new_full((phonemes.shape[0], 1), self.eos))
        return torch.cat(parts, dim=1)

    def logits(self, phonemes: torch.Tensor, prompt_first: torch.Tensor, target_first: torch.Tensor) -> torch.Tensor:
        """(B, T + 1, P + K + 1): the distributions of the target frames 0..T-1 and of <eos> after them."""
        seq = self.sequence(phonemes, prompt_first, target_first, eos=False)
        start = phonemes.shape[1] + prompt_first.shape[1] - 1  # the position that predicts target frame 0
        return self.prior(seq)[:, start:]

    def loss(self, phonemes: torch.Tensor, prompt_first: torch.Tensor, target_first: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy on the target's level-1 codes and <eos> only."""
        seq = self.sequence(phonemes, prompt_first, target_first)
        targets = seq[:, phonemes.shape[1] + prompt_first.shape[1] :]  # (B, T + 1)
        logits = self.logits(phonemes, prompt_first, target_first)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def generate(
        self,
        phonemes: torch.Tensor,
        prompt_first: torch.Tensor,
        max_frames: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Sample level-1 codes frame by frame until <eos> (or max_frames): (B, T) codes; after <eos>, <eos> again."""
        prefix = self.sequence(phonemes, prompt_first, eos=False)
        out = sample(
            self.prior,
            prefix,
            max_frames,
            temperature=temperature,
            generator=generator,
            vocab_range=(self.num_phonemes, self.eos + 1),
        )[:, prefix.shape[1] :]  # codes and <eos> only
        ended = (out == self.eos).long().cummax(dim=1).values.bool()  # (B, T): at or after the first <eos>
        return (out - self.num_phonemes).masked_fill(ended, self.codebook_size)  # K marks "after the end"


class ValleNAR(nn.Module):
    """Bidirectional transformer that predicts level j of every target frame from levels < j, the prompt
    and phonemes."""

    def __init__(
        self,
        *,
        num_phonemes: int,
        codebook_size: int,
        levels: int,
        dim: int = 32,
        depth: int = 2,
        n_heads: int = 4,
        max_len: int = 128,
    ):
        super().__init__()
        self.levels, self.codebook_size = levels, codebook_size
        self.phone_emb = nn.Embedding(num_phonemes, dim)
        self.code_emb = nn.ModuleList(nn.Embedding(codebook_size, dim) for _ in range(levels))  # one table per level
        self.stage_emb = nn.Embedding(levels, dim)
        self.register_buffer("pos", sinusoidal_positions(max_len, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, codebook_size) for _ in range(levels))  # heads[0] unused

    def _frames(self, codes: torch.Tensor, upto: int) -> torch.Tensor:
        """(B, T, Q) codes -> (B, T, D): the sum of the embeddings of levels 0 .. upto-1."""
        return sum(self.code_emb[q](codes[..., q]) for q in range(upto))

    def forward(self, phonemes: torch.Tensor, prompt: torch.Tensor, target: torch.Tensor, level: int) -> torch.Tensor:
        """Logits (B, T, K) of target level `level` (1 .. Q-1, 0-based); reads target levels < level only."""
        if not 1 <= level < self.levels:
            raise ValueError(f"the NAR stage predicts levels 1 .. {self.levels - 1} (0-based); got {level}")
        x = torch.cat([self.phone_emb(phonemes), self._frames(prompt, self.levels), self._frames(target, level)], dim=1)
        x = x + self.pos[: x.shape[1]] + self.stage_emb.weight[level]  # (B, L + T' + T, D)
        for block in self.blocks:
            x = block(x)  # no mask: every frame sees every other
        return self.heads[level](self.ln(x[:, -target.shape[1] :]))  # (B, T, K)

    def loss(self, phonemes: torch.Tensor, prompt: torch.Tensor, target: torch.Tensor, level: int) -> torch.Tensor:
        logits = self(phonemes, prompt, target, level)
        return F.cross_entropy(logits.reshape(-1, self.codebook_size), target[..., level].reshape(-1))


@torch.no_grad()
def generate(
    ar: ValleAR,
    nar: ValleNAR,
    phonemes: torch.Tensor,
    prompt: torch.Tensor,
    frames: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AR for level 1 (exactly `frames` frames here, <eos> masked out), then Q - 1 greedy NAR passes: (B, frames, Q)."""
    prefix = ar.sequence(phonemes, prompt[..., 0], eos=False)
    first = (
        sample(ar.prior, prefix, frames, generator=generator, vocab_range=(ar.num_phonemes, ar.eos))[
            :, prefix.shape[1] :
        ]
        - ar.num_phonemes
    )  # (B, T)
    codes = first.new_zeros(first.shape[0], frames, nar.levels)
    codes[..., 0] = first
    for level in range(1, nar.levels):
        codes[..., level] = nar(phonemes, prompt, codes, level).argmax(-1)
    return codes
