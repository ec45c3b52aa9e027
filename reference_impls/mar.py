"""MAR: masked bidirectional random-order autoregression and a causal variant, with the Diffusion Loss.

Paper and note: Autoregressive Image Generation without Vector Quantization, Li et al. 2024
(papers/li2024autoregressive.md). Official code: LTH14/mar (models/diffloss.py, models/mar.py,
diffusion/__init__.py, diffusion/gaussian_diffusion.py).

Variants in this module:
    MaskedARPrior + masked_mar_loss + masked_sample   MAR proper (models/mar.py): bidirectional MAE-style
        encoder / decoder, random generation order, masking ratio from a truncated normal, cosine unmasking.
    ContinuousARPrior + mar_loss + sample             the paper's causal raster variant (one token at a time).
    DiffusionLoss(learn_sigma=False)                  the paper's epsilon-MSE Diffusion Loss.
    DiffusionLoss(learn_sigma=True)                   the released DiffLoss: out_channels = 2 C, the hybrid
        loss  mse + vb  of create_diffusion(learn_sigma=True) (LossType.MSE, ModelVarType.LEARNED_RANGE).

No quantiser and no categorical: the tokens are continuous vectors x_i (a KL-VAE's latent
patches). A transformer maps the class and the known tokens to a vector z_i per position, and
p(x_i | z_i) is a denoising diffusion model run by a small MLP conditioned on z_i. The forward
process, its schedule and the fixed-variance sampler are DDPM's, from reference_impls/ddpm.py.

Equations implemented:
    Diffusion Loss      L(z, x) = E_{eps, t} || eps - eps_theta(x_t | t, z) ||^2,
                        x_t = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) eps            (ddpm.q_sample)
    learned variance    the MLP also outputs v in [-1, 1] per channel (no squashing; LEARNED_RANGE):
                        log sigma_t^2 = (v + 1)/2 log beta_t + (1 - v)/2 log beta~_t^clip,
                        beta~^clip = (beta~_1, beta~_1, beta~_2, ..) (posterior_log_variance_clipped)
                        vb_t = KL(q(x_{t-1} | x_t, x_0) || N(mu_theta(sg[eps]), sigma_t^2)) / log 2  (t > 0)
                        vb_0 = -log N_disc(x_0; mu_theta, sigma_0^2) / log 2 (8-bit bins of width 2/255)
                        loss = mean_c (eps - eps_theta)^2 + mean_c vb_t         (training_losses, "mse" + "vb")
                        the mean gets no gradient from vb (frozen_out); sampling uses sigma_t^2.
    schedule            cosine, T = 1000 (diffloss.py create_diffusion(noise_schedule="cosine"));
                        sampling respaced to num_sampling_steps (100 in main_mar.py) as respace.py does
    batch multiplier    each (x_i, z_i) pair is repeated m times with independent (t, eps)
                        (mar.py diffusion_batch_mul = 4), so z_i gets m noise levels per step
    denoiser            eps_theta(x_t | t, z): linear in, residual MLP blocks whose LayerNorm output is
                        shifted, scaled and gated by y = emb(t) + W z (adaLN), adaLN final layer
    causal variant      p(x_1, .., x_N | c) = prod_i p(x_i | z_i),   z_i = f(c, x_<i)
    MAR proper          order pi ~ Uniform(S_N) per image; ratio r ~ N(1, 0.25^2) truncated to [0.7, 1]
                        (scipy truncnorm((0.7 - 1)/0.25, 0, loc=1, scale=0.25)), ceil(N r) tokens masked
                        (the first of pi); the loss is the Diffusion Loss of the masked tokens only
    unmasking           after step s of S: m_s = max(1, min(m_{s-1} - 1, floor(N cos(pi/2 (s+1)/S))))
                        tokens stay masked; the last step predicts all that remain, so the counts sum to N

Notation (code -> paper / official code):
    tokens (B, N, C)   x, the VAE latent tokens (C = 16 for KL-16)      z   the condition vector
    width, depth       diffloss_w, diffloss_d                           m   diffusion_batch_mul
    buffer             buffer_size class-embedding slots (64)           v   model_var_values

Left out: guidance (cfg and its linear schedule), the class-label dropout, temperature is kept only
as a noise scale of the sampler; the KL autoencoder.
"""

from __future__ import annotations

import math

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
    """eps_theta(x_t | t, z): (N, C), (N,), (N, Dz) -> (N, out_dim), out_dim = C, or 2 C = [eps, v]."""

    def __init__(self, *, token_dim: int, cond_dim: int, width: int, depth: int, out_dim: int | None = None):
        super().__init__()
        self.width = width
        self.inp = nn.Linear(token_dim, width)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, out_dim or token_dim)  # 2 C with a learned variance (diffloss.py)
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


def clipped_posterior_log_variance(s: ddpm.Schedule) -> torch.Tensor:
    """(T,) log beta~_t with beta~_0 replaced by beta~_1 (gaussian_diffusion.py posterior_log_variance_clipped)."""
    v = s.posterior_variance
    return torch.cat([v[1:2], v[1:]]).log() if len(v) > 1 else v.log()


def learned_log_variance(s: ddpm.Schedule, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LEARNED_RANGE: v (N, C) in [-1, 1] -> log sigma_t^2 = frac log beta_t + (1 - frac) log beta~_t^clip."""
    frac = (v + 1) / 2
    max_log = ddpm._gather(s.betas.log(), t, v)
    min_log = ddpm._gather(clipped_posterior_log_variance(s), t, v)
    return frac * max_log + (1 - frac) * min_log


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of Phi used by diffusion_utils.py."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log P(bin of x) under N(means, e^(2 log_scales)) with 8-bit bins of half-width 1/255 on [-1, 1], the two
    edge bins open (diffusion_utils.py); applied by the release to continuous latent tokens at t = 0."""
    centered, inv = x - means, torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv * (centered - 1.0 / 255.0))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = (1.0 - cdf_min).clamp(min=1e-12).log()
    log_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def hybrid_loss(
    s: ddpm.Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """training_losses with LEARNED_RANGE and LossType.MSE: per-token (mse, vb) for out = [eps, v] (N, 2 C).

    mse = mean_c (noise - eps)^2; vb in bits per channel, from the frozen mean (eps detached) and the
    learned variance: the KL to the true posterior for t > 0, the discretised decoder NLL for t = 0.
    """
    c = x0.shape[-1]
    eps, v = out[:, :c], out[:, c:]
    x_t = ddpm.q_sample(s, x0, t, noise)
    mse = (noise - eps).pow(2).mean(-1)  # (N,)
    true_mean, _ = ddpm.q_posterior(s, x0, x_t, t)
    true_log_var = ddpm._gather(clipped_posterior_log_variance(s), t, x0)
    mean = ddpm.p_mean(s, x_t, t, eps.detach())  # the posterior mean of the predicted x_0: frozen for vb
    log_var = learned_log_variance(s, t, v)
    kl = normal_kl(true_mean, true_log_var, mean, log_var).mean(-1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var).mean(-1) / math.log(2.0)
    return mse, torch.where(t == 0, nll, kl)


def space_timesteps(num_steps: int, count: int) -> list[int]:
    """respace.py space_timesteps(T, [count]): count steps evenly spread over 0 .. T - 1, rounded."""
    if count == 1:
        return [0]
    stride = (num_steps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


def respaced(s: ddpm.Schedule, use: list[int]) -> ddpm.Schedule:
    """SpacedDiffusion: betas 1 - alpha_bar_t / alpha_bar_prev over the kept steps, the same alpha_bars there."""
    betas, last = [], 1.0
    for i in use:
        betas.append(1 - float(s.alpha_bars[i]) / last)
        last = float(s.alpha_bars[i])
    return ddpm.Schedule(torch.tensor(betas, dtype=torch.float64))


class DiffusionLoss(nn.Module):
    """The per-token diffusion model p(x | z): its loss and its sampler, on DDPM's cosine schedule.

    learn_sigma=False: the paper's epsilon-MSE, fixed-variance DDPM sampling.
    learn_sigma=True:  the released DiffLoss: the MLP has 2 C outputs [eps, v], the loss is mse + vb
                       (hybrid_loss), sampling uses the learned variance.
    """

    def __init__(
        self, *, token_dim: int, cond_dim: int, width: int, depth: int, num_steps: int = 1000, learn_sigma: bool = False
    ):
        super().__init__()
        self.token_dim, self.learn_sigma = token_dim, learn_sigma
        self.schedule = ddpm.Schedule(ddpm.cosine_betas(num_steps))
        out_dim = 2 * token_dim if learn_sigma else token_dim
        self.net = DenoiserMLP(token_dim=token_dim, cond_dim=cond_dim, width=width, depth=depth, out_dim=out_dim)

    def per_token(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(N,) loss of each row for given steps t (N,) and noise (N, C)."""
        out = self.net(ddpm.q_sample(self.schedule, x, t, noise), t, z)
        if not self.learn_sigma:
            return (noise - out).pow(2).mean(-1)
        mse, vb = hybrid_loss(self.schedule, x, t, noise, out)
        return mse + vb

    def forward(
        self,
        x: torch.Tensor,
        z: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        batch_mul: int = 1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean over tokens (those with mask = 1) of the per-token loss; x (N, C), z (N, Dz)."""
        x, z = x.repeat(batch_mul, 1), z.repeat(batch_mul, 1)  # m noise levels per token
        t = torch.randint(0, self.schedule.num_steps, (x.shape[0],), generator=generator, device=x.device)  # (mN,)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)  # (mN, C)
        per_token = self.per_token(x, z, t, noise)  # (mN,)
        if mask is None:
            return per_token.mean()
        mask = mask.repeat(batch_mul).to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum()

    @torch.no_grad()
    def sample(
        self,
        z: torch.Tensor,
        *,
        token_dim: int,
        num_sampling_steps: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One token x ~ p(x | z) per row of z (N, Dz): (N, C), by ancestral sampling (respaced if asked).

        Fixed variance beta_t without learn_sigma (ddpm.p_sample_loop, full schedule); the learned variance
        with it, the noise scaled by temperature (gaussian_diffusion.py p_sample).
        """
        if not self.learn_sigma and num_sampling_steps is None and temperature == 1.0:
            return ddpm.p_sample_loop(
                self.schedule,
                lambda x_t, t: self.net(x_t, t, z),
                (z.shape[0], token_dim),
                generator=generator,
                dtype=z.dtype,
            )
        use = space_timesteps(self.schedule.num_steps, num_sampling_steps or self.schedule.num_steps)
        s = respaced(self.schedule, use)
        x = torch.randn((z.shape[0], token_dim), generator=generator, dtype=z.dtype)
        for i in reversed(range(len(use))):
            t = torch.full((z.shape[0],), i, dtype=torch.long)  # index into the respaced schedule
            out = self.net(x, torch.full_like(t, use[i]), z)  # the net sees the original step (timestep_map)
            eps = out[:, :token_dim]
            mean = ddpm.p_mean(s, x, t, eps)
            if self.learn_sigma:
                log_var = learned_log_variance(s, t, out[:, token_dim:])
            else:
                log_var = ddpm._gather(s.betas.log(), t, x).expand_as(x)
            if i > 0:
                x = (
                    mean
                    + torch.exp(0.5 * log_var) * torch.randn(x.shape, generator=generator, dtype=x.dtype) * temperature
                )
            else:
                x = mean
        return x


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


# ----------------------------------------------------------------------------- MAR proper: masked, bidirectional


def truncated_normal_ratio(
    *, minimum: float = 0.7, std: float = 0.25, generator: torch.Generator | None = None
) -> float:
    """One masking ratio r ~ N(1, std^2) truncated to [minimum, 1], by inverting the CDF
    (mar.py mask_ratio_generator = truncnorm((minimum - 1) / std, 0, loc=1.0, scale=std))."""
    lo = torch.special.ndtr(torch.tensor((minimum - 1.0) / std, dtype=torch.float64))
    hi = torch.tensor(0.5, dtype=torch.float64)  # Phi(0)
    u = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)
    return float(1.0 + std * torch.special.ndtri(u))


def random_orders(batch: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N) one uniform random generation order per image (mar.py sample_orders)."""
    return torch.rand(batch, n, generator=generator).argsort(dim=1)


def mask_by_order(n_masked: int, orders: torch.Tensor) -> torch.Tensor:
    """(B, N) bool, True at the first n_masked positions of each order (mar.py mask_by_order)."""
    mask = torch.zeros(orders.shape, dtype=torch.bool, device=orders.device)
    return mask.scatter(1, orders[:, :n_masked], True)


def unmasking_schedule(n: int, steps: int) -> list[int]:
    """Tokens still masked after each of the steps (mar.py sample_tokens): cosine, at least one per step
    predicted while possible, and 0 after the last step, which predicts everything left."""
    remaining, out = n, []
    for step in range(steps):
        if step == steps - 1:
            remaining = 0
        else:
            cosine = math.floor(n * math.cos(math.pi / 2.0 * (step + 1) / steps))
            remaining = max(1, min(remaining - 1, cosine))
        out.append(remaining)
    return out


class MaskedARPrior(nn.Module):
    """MAR's bidirectional masked encoder-decoder (mar.py forward_mae_encoder / forward_mae_decoder).

    forward(tokens (B, N, C), mask (B, N) bool True = unknown, labels (B,)) -> z (B, N, D) for every position.
    The encoder reads `buffer` copies of the class embedding and the known tokens only (masked ones are
    dropped; every row must mask the same count); the decoder puts a learned [MASK] vector at the unknown
    positions, and both attend bidirectionally. Label n_classes is the null class (fake_latent).
    """

    def __init__(
        self,
        *,
        token_dim: int,
        n_tokens: int,
        n_classes: int,
        dim: int,
        enc_layers: int,
        dec_layers: int,
        n_heads: int,
        buffer: int = 64,
    ):
        super().__init__()
        self.n_tokens, self.buffer = n_tokens, buffer
        length = buffer + n_tokens
        self.z_proj = nn.Linear(token_dim, dim)
        self.cls_emb = nn.Embedding(n_classes + 1, dim)
        self.enc_pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.z_proj_ln = nn.LayerNorm(dim, eps=1e-6)
        self.encoder = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(enc_layers))
        self.enc_norm = nn.LayerNorm(dim)
        self.dec_embed = nn.Linear(dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.dec_pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.decoder = nn.ModuleList(TransformerBlock(dim, n_heads) for _ in range(dec_layers))
        self.dec_norm = nn.LayerNorm(dim)
        self.diffusion_pos = nn.Parameter(torch.randn(n_tokens, dim) * 0.02)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, n, _ = tokens.shape
        x = self.z_proj(tokens)  # (B, N, D)
        x = torch.cat([self.cls_emb(labels)[:, None].expand(b, self.buffer, -1), x], dim=1)  # (B, buf + N, D)
        x = self.z_proj_ln(x + self.enc_pos)
        unknown = torch.cat([mask.new_zeros(b, self.buffer), mask], dim=1)  # (B, buf + N)
        x = x[~unknown].view(b, -1, x.shape[-1])  # drop the unknown tokens: (B, buf + known, D)
        for block in self.encoder:
            x = block(x)  # no mask: bidirectional
        x = self.dec_embed(self.enc_norm(x))
        full = self.mask_token.expand(b, self.buffer + n, -1).clone()  # (B, buf + N, D)
        full[~unknown] = x.reshape(-1, x.shape[-1])
        x = full + self.dec_pos
        for block in self.decoder:
            x = block(x)
        return self.dec_norm(x)[:, self.buffer :] + self.diffusion_pos  # (B, N, D)


def masked_mar_loss(
    prior: MaskedARPrior,
    diffloss: DiffusionLoss,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    *,
    mask_min: float = 0.7,
    batch_mul: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MAR's training loss: random orders, ceil(N r) tokens masked with r from the truncated normal, the
    Diffusion Loss of the masked tokens given z (mar.py forward, forward_loss)."""
    b, n, c = tokens.shape
    orders = random_orders(b, n, generator)
    n_masked = math.ceil(n * truncated_normal_ratio(minimum=mask_min, generator=generator))
    mask = mask_by_order(n_masked, orders)  # (B, N)
    z = prior(tokens, mask, labels)  # (B, N, D)
    return diffloss(
        tokens.reshape(b * n, c),
        z.reshape(b * n, -1),
        mask=mask.reshape(-1),
        batch_mul=batch_mul,
        generator=generator,
    )


@torch.no_grad()
def masked_sample(
    prior: MaskedARPrior,
    diffloss: DiffusionLoss,
    labels: torch.Tensor,
    *,
    token_dim: int,
    num_iter: int = 64,
    num_sampling_steps: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mar.py sample_tokens without guidance: (tokens (B, N, C), step at which each token was drawn (B, N)).

    A random order per image; at each step z is computed for all positions from the known tokens and the
    tokens leaving the mask (the next ones of the order, unmasking_schedule) are drawn by the diffusion head.
    """
    b, n = labels.shape[0], prior.n_tokens
    orders = random_orders(b, n, generator)
    mask = torch.ones(b, n, dtype=torch.bool, device=labels.device)
    tokens = torch.zeros(b, n, token_dim, device=labels.device)
    drawn_at = torch.full((b, n), -1, dtype=torch.long, device=labels.device)
    for step, remaining in enumerate(unmasking_schedule(n, num_iter)):
        z = prior(tokens, mask, labels)  # (B, N, D)
        nxt = mask_by_order(remaining, orders)
        predict = mask & ~nxt  # (B, N): the same count in every row
        x = diffloss.sample(
            z[predict],
            token_dim=token_dim,
            num_sampling_steps=num_sampling_steps,
            temperature=temperature,
            generator=generator,
        )
        tokens[predict] = x
        drawn_at[predict] = step
        mask = nxt
    return tokens, drawn_at
