"""MAR's Diffusion Loss: autoregression over continuous tokens, each modelled by a small diffusion MLP.

Paper and note: Autoregressive Image Generation without Vector Quantization, Li et al. 2024
(papers/li2024autoregressive.md). Official code: LTH14/mar (models/diffloss.py, models/mar.py,
diffusion/__init__.py).

No quantiser and no categorical: the tokens are continuous vectors x_i (a KL-VAE's latent
patches). A causal transformer maps the class and the earlier tokens to a vector z_i per
position, and p(x_i | z_i) is a denoising diffusion model run by a small MLP conditioned on z_i.
The forward process, its schedule and the sampler are DDPM's, from reference_impls/ddpm.py.

Equations implemented:
    autoregression      p(x_1, .., x_N | c) = prod_i p(x_i | z_i),   z_i = f(c, x_<i)   (causal transformer)
    Diffusion Loss      L(z, x) = E_{eps, t} || eps - eps_theta(x_t | t, z) ||^2,
                        x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps            (ddpm.q_sample)
    schedule            cosine, T = 1000 (diffloss.py create_diffusion(noise_schedule="cosine"))
    batch multiplier    each (x_i, z_i) pair is repeated m times with independent (t, eps)
                        (mar.py diffusion_batch_mul = 4), so z_i gets m noise levels per step
    denoiser            eps_theta(x_t | t, z): linear in, residual MLP blocks whose LayerNorm output is
                        shifted, scaled and gated by y = emb(t) + W z (adaLN), adaLN final layer
    sampling            x_i ~ p(x_i | z_i) by DDPM ancestral sampling from N(0, I)       (ddpm.p_sample_loop)

Notation (code -> paper / official code):
    tokens (B, N, C)   x, the VAE latent tokens (C = 16 for KL-16)      z   the condition vector
    width, depth       diffloss_w, diffloss_d                           m   diffusion_batch_mul

Simplifications: the prior here is the causal raster variant of the paper (its bidirectional
masked variant, MAR proper, changes the transformer, not the loss); the denoiser predicts the noise
only (the official one also learns the variance, see the note's pitfalls); guidance and the
sampling temperature are left out.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from reference_impls import ddpm
from reference_impls.attention import TransformerBlock, causal_mask, sinusoidal_embedding

# ----------------------------------------------------------------------------- the denoising MLP


class AdaLNResBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), with (shift, scale, gate) = Linear(SiLU(y))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.ada[-1].weight)  # adaLN-Zero: the block starts as the identity
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class DenoiserMLP(nn.Module):
    """eps_theta(x_t | t, z): (N, C), (N,), (N, Dz) -> (N, C)."""

    def __init__(self, *, token_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.width = width
        self.inp = nn.Linear(token_dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)
        for layer in (self.ada_out[-1], self.out):  # diffloss.py zeroes the final layer
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = self.time(sinusoidal_embedding(t, self.width)) + self.cond(z)  # (N, W)
        h = self.inp(x_t)  # (N, W)
        for block in self.blocks:
            h = block(h, y)
        shift, scale = self.ada_out(y).chunk(2, dim=-1)
        return self.out(self.norm_out(h) * (1 + scale) + shift)  # (N, C)


class DiffusionLoss(nn.Module):
    """The per-token diffusion model p(x | z): its loss and its sampler, on DDPM's cosine schedule."""

    def __init__(self, *, token_dim: int, cond_dim: int, width: int, depth: int, num_steps: int = 1000):
        super().__init__()
        self.schedule = ddpm.Schedule(ddpm.cosine_betas(num_steps))
        self.net = DenoiserMLP(token_dim=token_dim, cond_dim=cond_dim, width=width, depth=depth)

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        batch_mul: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean over tokens (those with mask = 1) of ||eps - eps_theta(x_t | t, z)||^2 / C; x (N, C), z (N, Dz)."""
        x, z = x.repeat(batch_mul, 1), z.repeat(batch_mul, 1)  # m noise levels per token
        t = torch.randint(0, self.schedule.num_steps, (x.shape[0],), generator=generator, device=x.device)  # (mN,)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (mN, C)
        per_token = (noise - self.net(ddpm.q_sample(self.schedule, x, t, noise), t, z)).pow(2).mean(-1)  # (mN,)
        if mask is None:
            return per_token.mean()
        mask = mask.repeat(batch_mul).to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum()

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, token_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One token x ~ p(x | z) per row of z (N, Dz): (N, C), by DDPM ancestral sampling."""
        return ddpm.p_sample_loop(
            self.schedule,
            lambda x_t, t: self.net(x_t, t, z),
            (z.shape[0], token_dim),
            generator=generator,
            dtype=z.dtype,
        )


# ----------------------------------------------------------------------------- the causal prior


class ContinuousARPrior(nn.Module):
    """Causal transformer over continuous tokens: forward(tokens (B, n, C), labels (B,)) -> z (B, n + 1, D).

    z[:, i] reads the class and tokens[:, :i] and conditions the diffusion model of token i.
    """

    def __init__(self, *, token_dim: int, n_tokens: int, n_classes: int, dim: int, n_layers: int, n_heads: int):
        super().__init__()
        self.n_tokens = n_tokens
        self.inp = nn.Linear(token_dim, dim)  # continuous tokens enter by a linear map, not a lookup
        self.cls_emb = nn.Embedding(n_classes + 1, dim)
        self.pos = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1] + 1
        if n > self.n_tokens + 1:
            raise ValueError(f"{tokens.shape[1]} tokens exceed the {self.n_tokens} of the prior")
        x = torch.cat([self.cls_emb(labels)[:, None], self.inp(tokens)], dim=1)[:, : self.n_tokens]  # (B, <= N, D)
        x = x + self.pos[: x.shape[1]]
        mask = causal_mask(x.shape[1], tokens.device)
        for block in self.blocks:
            x = block(x, mask=mask)  # TransformerBlock returns the hidden state
        return self.ln_f(x)  # (B, <= N, D)


def mar_loss(
    prior: ContinuousARPrior,
    diffloss: DiffusionLoss,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_mul: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Diffusion Loss of every token (B, N, C) given its z from the causal prior; gradients reach both."""
    z = prior(tokens[:, :-1], labels)  # (B, N, D): z_i from c and x_<i
    b, n, c = tokens.shape
    return diffloss(tokens.reshape(b * n, c), z.reshape(b * n, -1), batch_mul=batch_mul, generator=generator)


@torch.no_grad()
def sample(
    prior: ContinuousARPrior,
    diffloss: DiffusionLoss,
    labels: torch.Tensor,
    *,
    token_dim: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate (B, N, C) continuous tokens left to right, each drawn by the diffusion head from its z."""
    tokens = torch.zeros(labels.shape[0], 0, token_dim, device=labels.device)
    for _ in range(prior.n_tokens):
        z = prior(tokens, labels)[:, -1]  # (B, D)
        x = diffloss.sample(z, token_dim=token_dim, generator=generator)  # (B, C)
        tokens = torch.cat([tokens, x[:, None]], dim=1)
    return tokens
