"""Symbolic music diffusion: a DDPM over sequences of continuous VAE latents, transformer denoiser.

Paper and note: Mittal, Engel, Hawthorne & Simon 2021 (papers/mittal2021symbolic.md). Reuses
ddpm.py for the forward process, loss and sampler, and attention.py for the transformer.

Equations implemented (Sec. 3-4 of the paper, in our own small form):
    segment VAE    each segment s_k (a few steps of one-hot note tokens) -> z_k = mu(s_k) in R^D;
                   the paper uses pre-trained 2-bar MusicVAE embeddings, here a tiny MLP VAE
    sequence       Z = (z_1, ..., z_S) in R^{S x D}, the object the diffusion model generates
    DDPM           Z_t = sqrt(alpha_bar_t) Z + sqrt(1 - alpha_bar_t) eps, L_simple on Z
    denoiser       eps_theta(Z_t, t) = transformer encoder (no causal mask: every latent sees the
                   whole sequence) over in_proj(Z_t) + PE(k) + emb(t), projected back to R^D
    decode         each generated z_k goes through the VAE decoder independently -> logits
                   (S, steps, vocab)

Position behaviour (what the tests prove): without positional encodings the denoiser is
permutation-equivariant over the S latents (it sees a set); with them, order matters. Because
there is no causal mask the prediction at position 1 depends on position S (non-autoregressive).

Notation (code -> paper):
    num_segments   S (the number of latents in a sequence)     latent_dim   D
    steps, vocab   time steps per segment, note-token classes  denoiser     eps_theta
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls import ddpm
from reference_impls.attention import TransformerBlock, sinusoidal_embedding, sinusoidal_positions
from reference_impls.latent_diffusion import diagonal_gaussian_sample, kl_to_standard_normal


class SegmentVAE(nn.Module):
    """One segment (steps, vocab) of one-hot tokens <-> one latent vector in R^D."""

    def __init__(self, steps: int = 8, vocab: int = 6, latent_dim: int = 8, hidden: int = 64):
        super().__init__()
        self.steps, self.vocab, self.latent_dim = steps, vocab, latent_dim
        self.encoder = nn.Sequential(nn.Linear(steps * vocab, hidden), nn.SiLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, steps * vocab))

    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (..., steps) long -> mean, logvar (..., D)."""
        x = F.one_hot(tokens, self.vocab).float().flatten(-2)  # (..., steps * vocab)
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., D) -> logits (..., steps, vocab); each latent is decoded on its own."""
        return self.decoder(z).unflatten(-1, (self.steps, self.vocab))

    def loss(
        self, tokens: torch.Tensor, kl_weight: float = 0.1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mean, logvar = self.encode(tokens)
        logits = self.decode(diagonal_gaussian_sample(mean, logvar, generator))
        nll = F.cross_entropy(logits.flatten(0, -2), tokens.flatten(), reduction="mean") * self.steps
        kl = kl_to_standard_normal(mean.flatten(0, -2), logvar.flatten(0, -2)).mean()
        return nll + kl_weight * kl


class TransformerDenoiser(nn.Module):
    """eps_theta(Z_t, t) for Z_t (B, S, D); use_positions=False removes the sequence order."""

    def __init__(
        self,
        latent_dim: int,
        dim: int = 32,
        n_heads: int = 4,
        depth: int = 2,
        num_steps: int = 1000,
        use_positions: bool = True,
    ):
        super().__init__()
        self.dim, self.num_steps, self.use_positions = dim, num_steps, use_positions
        self.inp = nn.Linear(latent_dim, dim)
        self.temb = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, latent_dim))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.inp(z_t)  # (B, S, dim)
        if self.use_positions:
            h = h + sinusoidal_positions(z_t.shape[1], self.dim).to(h)
        h = h + self.temb(sinusoidal_embedding(t, self.dim))[:, None]  # same for every position
        for block in self.blocks:
            h = block(h)
        return self.out(h)  # (B, S, D)


class LatentSequenceDiffusion(nn.Module):
    """Frozen segment VAE + latent normalisation + DDPM over (B, S, D) latent sequences."""

    def __init__(self, vae: SegmentVAE, denoiser: TransformerDenoiser, schedule: ddpm.Schedule):
        super().__init__()
        self.vae, self.denoiser, self.schedule = vae.requires_grad_(False), denoiser, schedule
        self.register_buffer("mu", torch.zeros(vae.latent_dim))
        self.register_buffer("sd", torch.ones(vae.latent_dim))

    @torch.no_grad()
    def fit_normalisation(self, tokens: torch.Tensor) -> None:
        """Per-dimension mean and std of the encoder means over a corpus: tokens (B, S, steps)."""
        z = self.vae.encode(tokens)[0].flatten(0, -2)  # (B S, D)
        self.mu.copy_(z.mean(0))
        self.sd.copy_(z.std(0) + 1e-6)

    @torch.no_grad()
    def latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, S, steps) -> normalised latent sequence (B, S, D)."""
        return (self.vae.encode(tokens)[0] - self.mu) / self.sd

    def loss(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return ddpm.eps_loss(self.schedule, self.denoiser, self.latents(tokens), generator)

    @torch.no_grad()
    def sample(self, batch: int, num_segments: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """All S latents denoised in parallel, then decoded segment by segment: (B, S, steps, vocab) logits."""
        z = ddpm.p_sample_loop(self.schedule, self.denoiser, (batch, num_segments, self.vae.latent_dim), generator)
        return self.vae.decode(z * self.sd + self.mu)
