"""unCLIP: a diffusion prior from a CLIP text embedding to a CLIP image embedding, and a decoder conditioned on it.

Paper and note: DALL-E 2 / unCLIP, Ramesh et al. 2022 (papers/ramesh2022hierarchical.md), Sec. 2.
Generation is two stages: P(x | y) = P(x | z_i, y) P(z_i | y), where z_i is the CLIP image
embedding of x. The diffusion machinery is ddpm.py; the decoder is GLIDE's text-conditional
denoiser (reference_impls/glide.py) with the image embedding added to it; the embeddings come
from a CLIP model (reference_impls/clip.py).

Equations implemented:
    prior (Sec. 2.1): a decoder-only transformer reads the sequence
        [z_t (CLIP text embedding), timestep embedding, noised image embedding z_i^(t), query]
        under a causal mask; the query's output is the prediction of the clean z_i, trained with
        L_prior = E_{t, z_i^(t)} || f_theta(z_i^(t), t, y) - z_i ||^2        (x_0-prediction, not eps)
        sampling: z_i^(t-1) ~ q(z_i^(t-1) | z_i^(t), z_i = f_theta(...))   (ddpm.q_posterior)
    decoder (Sec. 2): eps_theta(x_t, t, y, z_i); z_i is projected and added to the timestep
        embedding, and projected into 4 extra tokens of context next to the caption's tokens.
    guidance: the decoder's embedding is dropped (set to zero) with probability p_drop_emb and
        the caption with probability p_drop_text during training, for classifier-free guidance.

Notation (code -> paper):
    text_emb    z_t, the CLIP text embedding     image_emb   z_i, the CLIP image embedding
    noisy_emb   z_i^(t)                          prior       f_theta
    caption     y (tokens)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_impls import ddpm
from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_embedding
from reference_impls.glide import TextConditionedDenoiser
from reference_impls.guidance import drop_condition


class DiffusionPrior(nn.Module):
    """f_theta(z_i^(t), t, z_t) -> predicted clean image embedding, all (B, E)."""

    def __init__(self, emb_dim: int, dim: int = 32, n_heads: int = 4, n_layers: int = 2):
        super().__init__()
        self.dim = dim
        self.text_in, self.noisy_in = nn.Linear(emb_dim, dim), nn.Linear(emb_dim, dim)
        self.time_in = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(dim) * 0.02)  # the final token whose output is read
        self.pos = nn.Parameter(torch.randn(4, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, emb_dim)

    def forward(self, noisy_emb: torch.Tensor, t: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        b = noisy_emb.shape[0]
        seq = (
            torch.stack(
                [
                    self.text_in(text_emb),  # (B, D)
                    self.time_in(sinusoidal_embedding(t, self.dim)),
                    self.noisy_in(noisy_emb),
                    self.query.expand(b, -1),
                ],
                dim=1,
            )
            + self.pos
        )  # (B, 4, D)
        mask = causal_mask(4, device=seq.device)
        for block in self.blocks:
            seq = block(seq, mask=mask)
        return self.out(self.ln(seq[:, -1]))  # (B, E), the query's output


def prior_loss(
    s: ddpm.Schedule,
    prior: nn.Module,
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_prior: mean squared error between f_theta(z_i^(t), t, z_t) and the clean z_i (B, E)."""
    t = torch.randint(0, s.num_steps, (image_emb.shape[0],), generator=generator)  # (B,)
    noise = torch.randn(image_emb.shape, generator=generator)  # (B, E)
    noisy = ddpm.q_sample(s, image_emb, t, noise)
    return F.mse_loss(prior(noisy, t, text_emb), image_emb)


@torch.no_grad()
def prior_sample(
    s: ddpm.Schedule, prior: nn.Module, text_emb: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Ancestral sampling with an x_0-predicting prior: returns z_i (B, E)."""
    z = torch.randn(text_emb.shape, generator=generator)  # (B, E)
    for i in reversed(range(s.num_steps)):
        t = torch.full((z.shape[0],), i, dtype=torch.long)
        mean, var = ddpm.q_posterior(s, prior(z, t, text_emb), z, t)  # plug f_theta in for z_i
        z = mean + var.sqrt() * torch.randn(z.shape, generator=generator) if i > 0 else mean
    return z


class UnCLIPDecoder(nn.Module):
    """eps_theta(x_t, t, y, z_i): GLIDE's denoiser plus the image embedding in two places."""

    def __init__(
        self, channels: int, size: int, vocab: int, text_len: int, emb_dim: int, dim: int = 32, n_extra_tokens: int = 4
    ):
        super().__init__()
        self.dim, self.n_extra = dim, n_extra_tokens
        self.glide = TextConditionedDenoiser(channels, size, vocab, text_len, dim)
        self.emb_to_time = nn.Linear(emb_dim, dim)  # added to the timestep embedding
        self.emb_to_tokens = nn.Linear(emb_dim, n_extra_tokens * dim)  # 4 extra context tokens

    def forward(self, x: torch.Tensor, t: torch.Tensor, caption: torch.Tensor, image_emb: torch.Tensor) -> torch.Tensor:
        extra = self.emb_to_tokens(image_emb).view(-1, self.n_extra, self.dim)  # (B, 4, D)
        return self.glide(x, t, caption, extra_ctx=extra, extra_emb=self.emb_to_time(image_emb))

    def loss(
        self,
        s: ddpm.Schedule,
        x0: torch.Tensor,
        caption: torch.Tensor,
        image_emb: torch.Tensor,
        p_drop_emb: float = 0.1,
        p_drop_text: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """L_simple with the embedding zeroed and the caption emptied at random (for classifier-free guidance)."""
        image_emb, _ = drop_condition(image_emb, torch.zeros_like(image_emb[0]), p_drop_emb, generator)
        caption, _ = drop_condition(caption, self.glide.null_text(caption)[0], p_drop_text, generator)
        return ddpm.eps_loss(s, lambda xt, t: self(xt, t, caption, image_emb), x0, generator)


@torch.no_grad()
def generate(
    prior_schedule: ddpm.Schedule,
    prior: nn.Module,
    decoder: UnCLIPDecoder,
    decoder_schedule: ddpm.Schedule,
    text_emb: torch.Tensor,
    caption: torch.Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text -> image embedding (prior) -> image (decoder). Returns (images (B, C, H, W), image_emb (B, E))."""
    image_emb = prior_sample(prior_schedule, prior, text_emb, generator)
    images = ddpm.p_sample_loop(
        decoder_schedule, lambda x, t: decoder(x, t, caption, image_emb), shape, generator, variance="posterior"
    )
    return images, image_emb
