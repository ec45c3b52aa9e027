"""The survey's own kind of model end to end: a VQ-VAE tokenizer, an autoregressive prior over its
token indices, held-out bits per dimension, samples; on one process or under torch.distributed.

Papers and notes:
    - VQ-VAE, van den Oord et al. 2017 (papers/oord2017neural.md): the tokenizer (reference_impls.vqvae,
      Eq. 3, with the EMA codebook of VQ-VAE-2, reference_impls.vq) and the prior fitted afterwards over
      the frozen tokens (Sec. 3.2, "we fit an autoregressive distribution over z").
    - Image GPT, Chen et al. 2020 (papers/chen2020generative.md): the prior, reference_impls.ar_prior's
      TokenPrior trained by next-token prediction in raster order.

Data: scikit-learn's `load_digits()` (1,797 digits, 8 x 8, grey levels 0..16, shipped inside the
package, nothing downloaded), split train / validation / test by a seeded permutation. `toy_levels`
makes stand-in images of the same form for the tests.

Bits per dimension (a bound, per test digit x of D = 64 pixels). The encoder is deterministic, so
q(z | x) puts all its mass on z* = the nearest codes, its entropy is 0, and the ELBO of Eq. 3's
model reads log p(x) >= log p(x | z*) + log p(z*). Hence

    bits/dim <= [ -log2 p(x | z*)  -  log2 p(z*) ] / D  =  tokenizer part + prior part

    prior part      -log2 p(z*) = -sum_i log2 p(z*_i | z*_<i), the prior's softmax restricted to the
                    K image tokens (the start token is never a valid image token, so its probability
                    is removed and the rest renormalised: the distribution the sampler draws from)
    tokenizer part  the decoder's mean mu (in grey levels, 16 x its [0, 1] output) read as a
                    discretised logistic over the 17 levels v = 0..16 (PixelCNN++'s likelihood, one
                    component): bin [v - 1/2, v + 1/2], the end bins open (v = 0 takes (-inf, 1/2],
                    v = 16 takes [15.5, inf)), so the 17 probabilities sum to 1:
                        p(v | mu, s) = sigmoid((v + 1/2 - mu) / s) - sigmoid((v - 1/2 - mu) / s)
                    The decoder is trained on squared error (Eq. 3) and has no scale of its own: s is
                    one of 17 values, chosen by the level mu rounds to, each fitted on the validation
                    split (background pixels, mu near 0, are reconstructed far more tightly than stroke
                    pixels). On seed 0 this gives 1.62 bits/dim for the tokenizer's part, against 1.75
                    for one Gaussian sigma per pixel position; any such choice keeps the bound valid.

Distributed: when a process group is initialised (torchrun sets the environment; `main` calls
init_process_group("gloo")), both models are wrapped in DistributedDataParallel and each rank takes
its slice of every global batch. All ranks draw the same global batch indices from the same seeded
generator, DDP averages the gradients of equal slices (the gradient of the whole batch's mean loss)
and reference_impls.vq all-reduces the EMA counts and sums, so N processes train the model one
process trains when fed the whole batch, equal up to float summation order: on the digits, 2.4e-6
apart after 30 tokenizer steps and 1.1e-5 after 300, the distance between one process on one
thread and on two. Like any two summation orders, the difference grows over thousands of steps
(the default run ends at a different model of the same quality). The attention key biases are the
exception from the start: their true gradient is 0 (softmax ignores a shift shared by all keys),
so Adam turns rounding noise into steps of up to the learning rate; the model's outputs do not
move. Early stopping reads the validation loss all-reduced over the ranks' slices, so every rank
stops at the same step.

Run:
    python -m reference_impls.pipeline --seed 0 --out build/digits
    torchrun --standalone --nproc_per_node=2 -m reference_impls.pipeline --seed 0 --out build/digits2
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from reference_impls.ar_prior import TokenPrior, raster_flatten, raster_unflatten, sample
from reference_impls.vq import distributed
from reference_impls.vqvae import VQVAE, toy_images

LEVELS = 17  # grey levels 0..16 of load_digits
SIDE = 8  # 8 x 8 images


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every size and budget of one run (the defaults: benchmarks/digits_study.py's; the notebook trains less)."""

    num_codes: int = 32  # K
    code_dim: int = 16
    hidden: int = 64
    downsample: int = 1  # 8 x 8 -> 4 x 4 = 16 tokens
    beta: float = 0.25
    vq_steps: int = 3000
    vq_lr: float = 2e-3
    vq_batch: int = 64  # global batch (split over the ranks)
    prior_dim: int = 64
    prior_layers: int = 2
    prior_heads: int = 4
    prior_steps: int = 3000  # at most; early stopping usually ends sooner
    prior_lr: float = 1e-3
    prior_batch: int = 64
    eval_every: int = 50  # validation loss every this many prior steps
    patience: int = 4  # stop after this many evaluations without a new best
    val_fraction: float = 0.15
    test_fraction: float = 0.15


@dataclass
class Split:
    """Grey levels (N, 8, 8) int64 in 0..16 and digit labels (N,) of each part."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor
    val_labels: torch.Tensor
    test_labels: torch.Tensor


@dataclass
class PriorFit:
    prior: TokenPrior  # the parameters of the best validation step
    history: list[dict] = field(default_factory=list)  # {"step", "train_nll", "val_nll"} in nats per token
    best_step: int = 0
    stopped_at: int = 0


# ----------------------------------------------------------------------------- data


def load_digits_levels() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits: grey levels (1797, 8, 8) int64 in 0..16 and labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.as_tensor(d.images).round().long(), torch.as_tensor(d.target).long()


def toy_levels(n: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in 8 x 8 images at 17 levels (vqvae.toy_images: blobs, label 0, and stripes, label 1)."""
    x = toy_images(n, size=SIDE, generator=generator)[:, 0]  # (n, 8, 8) in [0, 1]
    return (x * (LEVELS - 1)).round().long(), torch.arange(n) % 2


def split(levels: torch.Tensor, labels: torch.Tensor, *, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """A seeded permutation cut into train / validation / test."""
    n = levels.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return Split(levels[train], levels[val], levels[test], labels[train], labels[val], labels[test])


def to_images(levels: torch.Tensor) -> torch.Tensor:
    """Grey levels (N, 8, 8) -> the tokenizer's input (N, 1, 8, 8) in [0, 1]."""
    return levels.float().unsqueeze(1) / (LEVELS - 1)


# ----------------------------------------------------------------------------- distributed


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): (0, 1) without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's equal slice of a global batch (the whole batch on one process)."""
    rank, world = rank_and_world()
    if batch.shape[0] % world:
        raise ValueError(f"a global batch of {batch.shape[0]} does not split into {world} equal slices")
    return batch.chunk(world)[rank]


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel around module when a process group runs, else module itself."""
    return DistributedDataParallel(module) if distributed() else module


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of x over the ranks (x itself on one process)."""
    if distributed():
        x = x.clone()
        dist.all_reduce(x)
    return x


class _TokenizerLoss(nn.Module):
    """forward(x) = Eq. 3 on x, so that DDP sees the whole loss computed inside its forward."""

    def __init__(self, model: VQVAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)


class _PriorLoss(nn.Module):
    """forward(seq) = mean next-token cross-entropy of seq (B, 1 + T), start token first."""

    def __init__(self, prior: TokenPrior):
        super().__init__()
        self.prior = prior

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        logits = self.prior(seq[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))


# ----------------------------------------------------------------------------- tokenizer


def make_tokenizer(*, config: Config, seed: int) -> VQVAE:
    """The VQ-VAE with the EMA codebook, its parameters drawn from seed (the global RNG untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return VQVAE(
            in_ch=1,
            hidden=config.hidden,
            num_codes=config.num_codes,
            code_dim=config.code_dim,
            beta=config.beta,
            ema=True,
            downsample=config.downsample,
            generator=torch.Generator().manual_seed(seed),
        )


def train_tokenizer(images: torch.Tensor, *, config: Config, seed: int, steps: int | None = None) -> VQVAE:
    """Eq. 3 by Adam on random global batches of images (N, 1, 8, 8); the codebook seeded from data.

    Every rank draws the same global batch indices and trains on its slice of them.
    """
    model = make_tokenizer(config=config, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    model.init_codes(images[torch.randperm(images.shape[0], generator=g)[:512]], generator=g)
    net = wrap(_TokenizerLoss(model).train())
    opt = torch.optim.Adam(model.parameters(), lr=config.vq_lr)
    for _ in range(config.vq_steps if steps is None else steps):
        idx = torch.randint(0, images.shape[0], (config.vq_batch,), generator=g)
        loss = net(shard(images[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def encode(model: VQVAE, images: torch.Tensor) -> torch.Tensor:
    """Images (N, 1, 8, 8) -> token sequences (N, T) in raster order (the nearest codes z*)."""
    model.eval()
    grid = model.quantizer(model.encoder(images)).indices  # (N, h, w)
    return raster_flatten(grid)


@torch.no_grad()
def decode(model: VQVAE, tokens: torch.Tensor) -> torch.Tensor:
    """Token sequences (N, T) -> the decoder's mean in grey levels (N, 8, 8), 16 x its output."""
    side = math.isqrt(tokens.shape[1])
    return model.decode_indices(raster_unflatten(tokens, side, side))[:, 0] * (LEVELS - 1)


# ----------------------------------------------------------------------------- the discretised likelihood


def discretised_logistic_nll(levels: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-ln p(v | mu, s) of each pixel, in nats: levels v (...) in 0..16, mean mu and scale s in levels.

    p(v) = sigmoid((v + 1/2 - mu) / s) - sigmoid((v - 1/2 - mu) / s), the end bins open, so that the
    probabilities of the 17 levels sum to 1 (PixelCNN++'s discretised logistic, one component).
    Computed in float64, a bin above the mean by symmetry (1 - sigmoid(a) = sigmoid(-a)) so that it
    keeps its precision far in the tail.
    """
    v, mu, s = levels.double(), mean.double(), scale.double()
    hi = torch.where(v >= LEVELS - 1, torch.full_like(v, math.inf), v + 0.5)
    lo = torch.where(v <= 0, torch.full_like(v, -math.inf), v - 0.5)
    a, b = (lo - mu) / s, (hi - mu) / s
    above = a > 0
    p = torch.where(above, torch.sigmoid(-a) - torch.sigmoid(-b), torch.sigmoid(b) - torch.sigmoid(a))
    return -p.clamp_min(1e-300).log()


def level_bin(mean: torch.Tensor) -> torch.Tensor:
    """The decoder's mean rounded to its nearest grey level, 0..16: which scale a pixel uses."""
    return mean.round().clamp(0, LEVELS - 1).long()


def fit_scales(levels: torch.Tensor, mean: torch.Tensor, *, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """One logistic scale per level of the rounded mean (17,), each the candidate (a log grid) of least
    NLL over the pixels whose mean rounds to that level; a level no pixel reaches takes the overall best.

    levels and mean (N, 8, 8): held-out digits (the validation split) and their reconstructions.
    """
    cand = torch.logspace(math.log10(0.03), math.log10(8.0), 60) if candidates is None else candidates  # (S,)
    v, mu = levels.flatten(), mean.flatten()  # (P,)
    nll = discretised_logistic_nll(v[None], mu[None], cand[:, None].expand(-1, v.numel()))  # (S, P)
    per_bin = torch.zeros(cand.numel(), LEVELS, dtype=nll.dtype).index_add_(1, level_bin(mu), nll)  # (S, 17)
    seen = torch.bincount(level_bin(mu), minlength=LEVELS) > 0
    best = torch.where(seen, per_bin.argmin(0), nll.sum(1).argmin())  # (17,)
    return cand[best].float()


# ----------------------------------------------------------------------------- prior


def make_prior(*, config: Config, seed: int) -> TokenPrior:
    """TokenPrior over K image tokens plus a start token (id K), parameters drawn from seed."""
    tokens = (SIDE >> config.downsample) ** 2
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TokenPrior(config.num_codes + 1, config.prior_dim, config.prior_layers, config.prior_heads, tokens + 1)


def with_start(tokens: torch.Tensor, start: int) -> torch.Tensor:
    """(N, T) image tokens -> (N, 1 + T) with the start token first."""
    return torch.cat([torch.full_like(tokens[:, :1], start), tokens], dim=1)


@torch.no_grad()
def prior_nll(prior: TokenPrior, tokens: torch.Tensor, *, batch: int = 512) -> torch.Tensor:
    """-ln p(z) of each sequence (N, T) of image tokens, in nats: (N,).

    The start token's logit is removed before the softmax, so p is the distribution over the K
    image tokens that `sample_tokens` draws from and sums to 1 over all K^T sequences.
    """
    k = prior.vocab_size - 1
    out = []
    for chunk in tokens.split(batch):
        logits = prior(with_start(chunk, k)[:, :-1])[..., :k]  # (B, T, K): image tokens only
        logp = logits.log_softmax(-1).gather(-1, chunk[..., None])[..., 0]  # (B, T)
        out.append(-logp.sum(1))
    return torch.cat(out)


def train_prior(
    train_tokens: torch.Tensor, val_tokens: torch.Tensor, *, config: Config, seed: int, steps: int | None = None
) -> PriorFit:
    """Next-token prediction on the training tokens (N, T), early stopping on the validation NLL.

    The validation NLL (nats per token, over the image tokens) is read every eval_every steps,
    summed over the ranks' slices of the validation set; training stops after `patience`
    evaluations without a new best, and the best step's parameters are returned.
    """
    k = config.num_codes
    prior = make_prior(config=config, seed=seed).train()
    net = wrap(_PriorLoss(prior))
    opt = torch.optim.AdamW(prior.parameters(), lr=config.prior_lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed + 2)
    seqs = with_start(train_tokens, k)  # (N, 1 + T)
    rank, world = rank_and_world()
    val_slice = val_tokens.tensor_split(world)[rank]
    fit = PriorFit(copy.deepcopy(prior))
    best, since, running = math.inf, 0, []
    total = config.prior_steps if steps is None else steps
    for step in range(1, total + 1):
        idx = torch.randint(0, seqs.shape[0], (config.prior_batch,), generator=g)
        loss = net(shard(seqs[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        running.append(loss.item())
        if step % config.eval_every and step != total:
            continue
        prior.eval()
        sums = all_sum(torch.tensor([prior_nll(prior, val_slice).sum().item(), float(val_slice.numel())]))
        prior.train()
        val = (sums[0] / sums[1]).item()
        fit.history.append({"step": step, "train_nll": sum(running) / len(running), "val_nll": val})
        running = []
        if val < best:
            best, since, fit.best_step = val, 0, step
            fit.prior.load_state_dict(prior.state_dict())
        else:
            since += 1
        fit.stopped_at = step
        if since >= config.patience:
            break
    fit.prior.eval()
    return fit


@torch.no_grad()
def sample_tokens(prior: TokenPrior, n: int, *, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
    """n token sequences (n, T) from the prior, each draw restricted to the K image tokens.

    Without the restriction the prior may draw its start token (id K) at an image position, which
    indexes past the codebook when decoded.
    """
    k = prior.vocab_size - 1
    start = torch.full((n, 1), k, dtype=torch.long)
    seq = sample(prior, start, prior.max_len - 1, temperature=temperature, generator=generator, vocab_range=(0, k))
    return seq[:, 1:]


# ----------------------------------------------------------------------------- evaluation


def bits_per_dim(nll_nats: torch.Tensor, dims: int) -> float:
    """Mean over examples of an NLL in nats per example (N,) -> bits per dimension."""
    return nll_nats.double().mean().item() / (dims * math.log(2))


@torch.no_grad()
def bound_parts(
    tokenizer: VQVAE, prior: TokenPrior, levels: torch.Tensor, scales: torch.Tensor
) -> dict[str, torch.Tensor]:
    """-ln p(x | z*) and -ln p(z*) of each digit (N, 8, 8), in nats (N,) each: the two parts of the bound."""
    tokens = encode(tokenizer, to_images(levels))  # (N, T)
    mean = decode(tokenizer, tokens)  # (N, 8, 8)
    recon = discretised_logistic_nll(levels, mean, scales[level_bin(mean)]).flatten(1).sum(1)  # (N,)
    return {"tokenizer": recon, "prior": prior_nll(prior, tokens).double()}


def pixel_histogram_nll(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Reference: independent pixels, a 17-level histogram per position from train (add-one): nats (N,)."""
    counts = F.one_hot(train.flatten(1), LEVELS).sum(0).double() + 1  # (64, 17)
    logp = (counts / counts.sum(1, keepdim=True)).log()  # (64, 17)
    return -logp.gather(1, test.flatten(1).t()).t().sum(1)  # (N,)


def token_unigram_nll(train_tokens: torch.Tensor, tokens: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Reference prior: each token drawn independently from the training token frequencies (add-one): nats (N,)."""
    counts = torch.bincount(train_tokens.flatten(), minlength=num_codes).double() + 1
    return -(counts / counts.sum()).log()[tokens].sum(1)


def nearest(queries: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance (in grey levels) from each query (N, 8, 8) to its nearest reference image, and its index."""
    d = torch.cdist(queries.flatten(1).double(), reference.flatten(1).double())  # (N, M)
    return d.min(1)


def codebook_usage(tokens: torch.Tensor, num_codes: int) -> dict[str, float]:
    """How many of the K codes the tokens use, and the perplexity of their histogram."""
    p = torch.bincount(tokens.flatten(), minlength=num_codes).double()
    p = p / p.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used": int((p > 0).sum()), "perplexity": float(entropy.exp())}


@dataclass
class Run:
    config: Config
    seed: int
    data: Split
    tokenizer: VQVAE
    fit: PriorFit
    scales: torch.Tensor  # (17,) the logistic scale per rounded mean level
    metrics: dict
    samples: torch.Tensor  # (n, T) tokens


def run(
    *, seed: int, config: Config | None = None, data: Split | None = None, n_samples: int = 100, timings: bool = True
) -> Run:
    """Split, tokenizer, prior with early stopping, test bits/dim in parts, samples: one seed."""
    config = config or Config()
    if data is None:
        levels, labels = load_digits_levels()
        data = split(levels, labels, seed=seed, val_fraction=config.val_fraction, test_fraction=config.test_fraction)
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(to_images(data.train), config=config, seed=seed)
    t1 = time.perf_counter()
    train_tokens, val_tokens, test_tokens = (encode(tokenizer, to_images(x)) for x in (data.train, data.val, data.test))
    fit = train_prior(train_tokens, val_tokens, config=config, seed=seed)
    t2 = time.perf_counter()
    scales = fit_scales(data.val, decode(tokenizer, val_tokens))
    parts = bound_parts(tokenizer, fit.prior, data.test, scales)
    dims = SIDE * SIDE
    tokens_per_image = test_tokens.shape[1]
    samples = sample_tokens(fit.prior, n_samples, generator=torch.Generator().manual_seed(seed + 3))
    sample_images = decode(tokenizer, samples).clamp(0, LEVELS - 1)
    d_sample, _ = nearest(sample_images, data.train.double())
    d_test, _ = nearest(data.test.double(), data.train.double())
    train_set = {tuple(t) for t in train_tokens.tolist()}
    metrics = {
        "seed": seed,
        "test_bpd": bits_per_dim(parts["tokenizer"] + parts["prior"], dims),
        "test_bpd_tokenizer": bits_per_dim(parts["tokenizer"], dims),
        "test_bpd_prior": bits_per_dim(parts["prior"], dims),
        "test_bpd_prior_unigram": bits_per_dim(token_unigram_nll(train_tokens, test_tokens, config.num_codes), dims),
        "test_bpd_pixel_histogram": bits_per_dim(pixel_histogram_nll(data.train, data.test), dims),
        "test_prior_bits_per_token": bits_per_dim(parts["prior"], tokens_per_image),
        "test_mse_levels": float(((decode(tokenizer, test_tokens) - data.test) ** 2).mean()),
        "best_step": fit.best_step,
        "stopped_at": fit.stopped_at,
        "codebook": codebook_usage(train_tokens, config.num_codes),
        "sample_copies": sum(tuple(t) in train_set for t in samples.tolist()) / n_samples,
        "sample_nearest_train_median": float(d_sample.median()),
        "test_nearest_train_median": float(d_test.median()),
        "sizes": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
    }
    if timings:
        metrics["seconds"] = {"tokenizer": t1 - t0, "prior": t2 - t1}
    return Run(config, seed, data, tokenizer, fit, scales, metrics, samples)


# ----------------------------------------------------------------------------- script


def state(run_: Run) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of both models, by name (what the 1-process / N-process comparison reads)."""
    out = {f"tokenizer.{k}": v for k, v in run_.tokenizer.state_dict().items()}
    out |= {f"prior.{k}": v for k, v in run_.fit.prior.state_dict().items()}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="build/digits")
    parser.add_argument("--data", choices=["digits", "toy"], default="digits", help="toy: vqvae.toy_images at 8 x 8")
    parser.add_argument("--vq-steps", type=int, default=Config.vq_steps)
    parser.add_argument("--prior-steps", type=int, default=Config.prior_steps)
    parser.add_argument("--eval-every", type=int, default=Config.eval_every)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args(argv)
    config = Config(vq_steps=args.vq_steps, prior_steps=args.prior_steps, eval_every=args.eval_every)
    started = False
    if "RANK" in os.environ and not distributed():  # launched by torchrun
        dist.init_process_group("gloo")
        started = True
    data = None
    if args.data == "toy":
        levels, labels = toy_levels(240, generator=torch.Generator().manual_seed(args.seed))
        data = split(levels, labels, seed=args.seed, val_fraction=config.val_fraction, test_fraction=0.2)
    result = run(seed=args.seed, config=config, data=data, n_samples=args.samples)
    rank, world = rank_and_world()
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        torch.save(state(result), os.path.join(args.out, "model.pt"))
        torch.save(result.samples, os.path.join(args.out, "samples.pt"))
        metrics = result.metrics | {"world_size": world, "config": asdict(config)}
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=1)
        print(json.dumps({k: metrics[k] for k in ("test_bpd", "test_bpd_tokenizer", "test_bpd_prior", "best_step")}))
    if started:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
