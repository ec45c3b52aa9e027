"""MDLM: the SUBS parameterisation of a masked diffusion denoiser and its Rao-Blackwellised bound.

Paper and note:
    - MDLM, Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"
      (papers/sahoo2024simple.md); official code kuleshov-group/mdlm @ c112c52: diffusion.py
      (_subs_parameterization, _sample_t, q_xt, _forward_pass_diffusion, _ddpm_caching_update,
      _sample) and noise_schedule.py (LogLinearNoise), whose forms this module follows; equation
      numbers are those of the arXiv paper (2406.07524).
    - The masking process, the schedule protocol, the bound and the ancestral step are MD4's and are
      imported from reference_impls/md4.py (papers/shi2024simplified.md); the discrete-time KL it
      simplifies is D3PM's, reference_impls/discrete_diffusion.py (papers/austin2021structured.md).

Reverse step (Eq. 7): p_theta(z_s | z_t) = q(z_s | z_t, x = x_theta(z_t, t)), the posterior of Eq. 6,
    z_t != m: Cat(z_s; z_t),   z_t = m: Cat(z_s; ((1 - alpha_s) m + (alpha_s - alpha_t) x_theta) / (1 - alpha_t)).
The network sees z_t over V + 1 tokens ([MASK] = m = V, the official mask_index = vocab_size when the
tokenizer has none) and returns logits over the same V + 1 classes. SUBS (Sec. 3.2.3) turns them into x_theta:
    zero masking probabilities   <x_theta(z_t, t), m> = 0        the [MASK] logit is set to -inf
    carry-over unmasking         x_theta(z_t, t)^n = z_t^n  if z_t^n != m   (a one-hot: log 1 = 0, else -inf)
(the official code adds -1e6 instead of -inf and writes 0 / -1e6 into unmasked rows.)

With both, every term of the absorbing-state ELBO at an unmasked position and every term that
would predict [MASK] vanishes, and the discrete-time bound (D3PM's sum of KLs, T steps, s = t - 1/T)
(Eq. 9 in general) is Rao-Blackwellised into a weighted masked cross-entropy over all positions:
    Eq. 8    L_T   = sum_i E_q [ (alpha_s - alpha_t) / (1 - alpha_t) sum_n -log <x_theta^n(z_t), x^n> ]
    Eq. 11   L_inf = int_0^1 E_q [ alpha'_t / (1 - alpha_t) sum_n log <x_theta^n(z_t), x^n> ] dt
(Eq. 10 for one token) which is MD4's bound (the sum runs over all n; carry-over makes the unmasked
terms exactly 0, the note under Eq. 11).
The log-linear noise sigma(t) = -log(1 - (1 - eps) t) gives alpha_t = exp(-sigma(t)) = 1 - (1 - eps) t
and the official weight sigma'(t) / expm1(sigma(t)) = -alpha'_t / (1 - alpha_t) = 1 / t.

Times (official _sample_t, sampling_eps = 1e-3): u_b ~ U(0, 1) for each of B examples,
t_b = (1 - eps_t) ((u_b + b) / B mod 1) + eps_t: one draw in each of B strata (the official code calls
it antithetic; MD4's lattice shares one u). The sampler (Sec. 4.1, official ddpm_cache) is MD4's
ancestral step with one change: a network that does not see t returns the same x_theta while z_t is unchanged,
so the last call is reused: at most one network call per step that unmasked a token, plus the first.

Notation (code -> paper):
    sigma(t), dsigma(t)   sigma(t), sigma'(t) (noise, total and rate)   alpha(t)   alpha_t = exp(-sigma(t))
    subs_log_probs        log x_theta(z_t, t) after SUBS                mask_id    m
    logits_fn(z_t, t)     the network's raw logits over V + 1 classes   x, z       x, z_t

Left out: semi-autoregressive generation, the DiT backbone, importance sampling / change of variables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reference_impls import md4
from reference_impls.md4 import LogitsFn, Samples, Schedule


@dataclass(frozen=True)
class LogLinearNoise:
    """The official LogLinearNoise: sigma(t) = -log(1 - (1 - eps) t); an md4.Schedule through alpha = exp(-sigma)."""

    eps: float = 1e-3

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def dsigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.sigma(t))

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """MD4's alpha'_t / (1 - alpha_t), computed in MDLM's form -sigma'(t) / expm1(sigma(t)) (= -1/t)."""
        return -self.dsigma(t) / torch.expm1(self.sigma(t))


def subs_log_probs(logits: torch.Tensor, z: torch.Tensor, *, mask_id: int) -> torch.Tensor:
    """SUBS: logits (B, N, V + 1), z_t (B, N) -> log x_theta (B, N, V + 1), normalised.

    [MASK] gets -inf (zero mass); an unmasked position gets the one-hot of z_t^n (0 at z_t^n, -inf elsewhere).
    """
    logits = logits.double().clone()
    logits[..., mask_id] = -torch.inf
    log_probs = F.log_softmax(logits, dim=-1)  # (B, N, V + 1)
    carry = torch.full_like(log_probs, -torch.inf).scatter(-1, z.unsqueeze(-1), 0.0)  # one-hot of z_t in log space
    return torch.where((z != mask_id).unsqueeze(-1), carry, log_probs)


def subs_denoiser(logits_fn: LogitsFn, *, mask_id: int) -> LogitsFn:
    """Wrap a network's raw logits_fn into the SUBS log-probabilities (usable as MD4's logits_fn)."""

    def fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return subs_log_probs(logits_fn(z, t), z, mask_id=mask_id)

    return fn


def sample_times(
    batch: int, *, sampling_eps: float = 1e-3, antithetic: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Official _sample_t: one draw per stratum [b / B, (b + 1) / B), mapped to [eps_t, 1). (B,) float64."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    if antithetic:
        u = torch.remainder(u / batch + torch.arange(batch, dtype=torch.float64) / batch, 1.0)
    return (1 - sampling_eps) * u + sampling_eps


def loss(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    mask_id: int,
    schedule: Schedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MDLM's continuous-time loss (official _forward_pass_diffusion, T = 0), (B,):

    w(t) sum over ALL positions of log x_theta(z_t)_{x^n}, z_t ~ q(z_t | x) by MD4's forward_mask.
    Carry-over makes the unmasked positions contribute exactly 0, so this is MD4's diffusion_loss.
    """
    z = md4.forward_mask(x, schedule.alpha(t), mask_id=mask_id, generator=generator)  # (B, N)
    log_x = subs_log_probs(logits_fn(z, t), z, mask_id=mask_id)  # (B, N, V + 1)
    ll = log_x.gather(-1, x.unsqueeze(-1)).squeeze(-1)  # (B, N), 0 where z_t^n = x^n
    return schedule.weight(t).double() * ll.sum(-1)


def nll_bound(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    *,
    mask_id: int,
    schedule: Schedule,
    n_t: int = 16,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """MD4's Monte Carlo bound (md4.masked_diffusion_nll_bound) of the SUBS denoiser, nats per sequence (B,)."""
    return md4.masked_diffusion_nll_bound(
        subs_denoiser(logits_fn, mask_id=mask_id), x, mask_id=mask_id, schedule=schedule, n_t=n_t, generator=generator
    )


@torch.no_grad()
def sample(
    logits_fn: LogitsFn,
    shape: tuple[int, int],
    *,
    mask_id: int,
    schedule: Schedule,
    num_steps: int,
    generator: torch.Generator | None = None,
    t_min: float = 1e-5,
    cache: bool = True,
) -> Samples:
    """Official ddpm_cache sampler: times linspace(1, t_min, steps + 1), MD4's ancestral step on x_theta.

    With cache=True (valid for a network that does not see t, the official default time_conditioning
    = False) x_theta is recomputed only after a step that changed z_t. Tokens still masked at the end
    take the argmax of x_theta (official noise_removal). mask_id must be V (the last class).
    """
    b = shape[0]
    times = torch.linspace(1.0, t_min, num_steps + 1, dtype=torch.float64)
    z = torch.full(shape, mask_id, dtype=torch.long)
    probs, passes = None, 0
    for i in range(num_steps):
        t, s = times[i], times[i + 1]
        if probs is None:
            probs = subs_log_probs(logits_fn(z, t.expand(b)), z, mask_id=mask_id).exp()  # (B, N, V + 1)
            passes += 1
        z_next = md4.ancestral_step(
            z, probs, schedule.alpha(s), schedule.alpha(t), mask_id=mask_id, generator=generator
        )
        if not cache or not torch.equal(z_next, z):
            probs = None
        z = z_next
    left = z == mask_id
    if left.any():
        if probs is None:
            probs = subs_log_probs(logits_fn(z, times[-1].expand(b)), z, mask_id=mask_id).exp()
            passes += 1
        z = torch.where(left, probs.argmax(-1), z)
    return Samples(z, passes)
