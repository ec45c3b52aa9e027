"""The end-to-end pipeline: its bits-per-dimension bookkeeping against a closed form, a likelihood that
sums to one, a sampler that never emits the start token, early stopping that keeps the best step, and
two gloo processes (mp.spawn, and the real torchrun) that train the models of one process fed the
whole batch."""

import itertools
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo import free_port as _free_port

from reference_impls import pipeline
from reference_impls.ar_prior import sample
from reference_impls.pipeline import Config

TINY = Config(
    num_codes=8, code_dim=4, hidden=8, vq_steps=3, vq_batch=8, prior_dim=16, prior_layers=1, prior_heads=2,
    prior_steps=4, prior_batch=8, eval_every=2, patience=10,
)  # fmt: skip


def _toy(seed: int = 0) -> pipeline.Split:
    levels, labels = pipeline.toy_levels(60, generator=torch.Generator().manual_seed(seed))
    return pipeline.split(levels, labels, seed=seed, val_fraction=0.2, test_fraction=0.2)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_discretised_logistic_puts_mass_one_on_the_17_levels():
    mean = torch.tensor([-3.0, 0.0, 0.3, 7.5, 16.0, 21.0])  # below, at and above the level range
    for s in (0.1, 1.0, 4.0):
        nll = pipeline.discretised_logistic_nll(
            torch.arange(17)[:, None].expand(17, 6), mean.expand(17, 6), torch.full((17, 6), s)
        )
        torch.testing.assert_close(nll.neg().exp().sum(0), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-12)


def test_bits_per_dim_of_a_uniform_prior_and_a_constant_decoder_equal_their_closed_form():
    # Prior: a zero head gives equal logits over the K + 1 ids; with the start token removed each image
    # token has probability 1 / K, so -log2 p(z) = T log2 K whatever z is. Decoder: zero weights, so its
    # output is its last bias c (the mean mu = 16 c in levels) at every pixel.
    config = replace(TINY, num_codes=8)
    tok = pipeline.make_tokenizer(config=config, seed=0)
    prior = pipeline.make_prior(config=config, seed=0)
    with torch.no_grad():
        prior.head.weight.zero_()
        for p in tok.decoder.parameters():
            p.zero_()
        tok.decoder[-1].bias.fill_(5.0 / 16)  # mu = 5 levels
    levels = torch.zeros(3, 8, 8, dtype=torch.long)
    levels[0] = 5  # at the mean: p = sigmoid(.5/s) - sigmoid(-.5/s)
    levels[1] = 0  # the open bottom bin: p = sigmoid((.5 - 5)/s)
    levels[2] = 16  # the open top bin: p = 1 - sigmoid((15.5 - 5)/s)
    scales = torch.full((17,), 9.0)
    scales[5] = 2.0  # the scale of pixels whose mean rounds to level 5
    parts = pipeline.bound_parts(tok, prior, levels, scales)
    t, k, d = 16, 8, 64
    p_pixel = [_sigmoid(0.25) - _sigmoid(-0.25), _sigmoid(-4.5 / 2), 1 - _sigmoid(10.5 / 2)]
    expected_tokenizer = sum(-d * math.log(p) for p in p_pixel) / 3 / (d * math.log(2))
    assert pipeline.bits_per_dim(parts["prior"], d) == pytest.approx(t * math.log2(k) / d, rel=1e-6)
    assert pipeline.bits_per_dim(parts["tokenizer"], d) == pytest.approx(expected_tokenizer, rel=1e-9)


def test_each_scale_is_fitted_on_the_pixels_whose_mean_rounds_to_its_level():
    # Pixels with mean 0 are exact, pixels with mean 8 are off by 3 levels: the first level gets the
    # smallest candidate scale, level 8 a wide one, and a level no pixel reaches the overall best.
    g = torch.Generator().manual_seed(0)
    mean = torch.zeros(200, 8, 8)
    mean[:, 4:] = 8.0
    levels = mean.long().clone()
    levels[:, 4:] += 3 * (torch.randint(0, 2, (200, 4, 8), generator=g) * 2 - 1)
    cand = torch.tensor([0.05, 0.5, 1.0, 2.0, 4.0])
    scales = pipeline.fit_scales(levels, mean, candidates=cand)
    assert scales[0] == 0.05 and scales[8] >= 1.0
    overall = cand[
        torch.stack([pipeline.discretised_logistic_nll(levels, mean, c.expand_as(mean)).sum() for c in cand]).argmin()
    ]
    assert scales[3] == overall


def test_prior_likelihood_sums_to_one_over_every_image_token_sequence():
    # T = 4 tokens of K = 3 codes: 81 sequences. With the start token's probability left in, the sum
    # would fall short of 1 by the mass the prior puts on the start token.
    config = replace(TINY, num_codes=3, downsample=2)  # 8 x 8 -> 2 x 2 = 4 tokens
    prior = pipeline.make_prior(config=config, seed=1)
    with torch.no_grad():
        prior.head.weight[3] += 2.0  # give the start token (id 3) real mass
    seqs = torch.tensor(list(itertools.product(range(3), repeat=4)))  # (81, 4)
    total = pipeline.prior_nll(prior, seqs).neg().exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0), rtol=0, atol=1e-5)


def test_sampler_never_emits_the_start_token_even_when_the_prior_prefers_it():
    config = replace(TINY, num_codes=4)
    prior = pipeline.make_prior(config=config, seed=0).eval()
    with torch.no_grad():  # the final features are all ones, so logit_v = sum of head row v
        prior.ln_f.weight.zero_()
        prior.ln_f.bias.fill_(1.0)
        prior.head.weight.zero_()
        prior.head.weight[4] = 1.0  # the start token (id K = 4) wins by 16 nats
        prior.head.weight[2] = 0.05  # among image tokens, 2 is the likeliest
    g = torch.Generator().manual_seed(0)
    unrestricted = sample(prior, torch.full((50, 1), 4), 16, generator=g)[:, 1:]
    assert (unrestricted == 4).float().mean() > 0.99  # what the plain sampler does
    tokens = pipeline.sample_tokens(prior, 200, generator=g)
    assert tokens.shape == (200, 16) and tokens.max() < 4 and tokens.min() >= 0
    assert (tokens == 2).float().mean() > 0.4  # p(2) = e^.8 / (3 + e^.8) = 0.43 among the image tokens


def test_early_stopping_returns_the_parameters_of_the_best_validation_step():
    g = torch.Generator().manual_seed(0)
    train, val = torch.randint(0, 8, (40, 16), generator=g), torch.randint(0, 8, (12, 16), generator=g)  # noise
    config = replace(TINY, prior_dim=32, prior_lr=1e-2, prior_steps=200, eval_every=5, patience=3)
    fit = pipeline.train_prior(train, val, config=config, seed=0)  # it overfits the 40 noise sequences
    best = min(fit.history, key=lambda h: h["val_nll"])
    assert best["step"] == fit.best_step and fit.stopped_at > fit.best_step
    assert fit.stopped_at == fit.history[-1]["step"] == fit.best_step + 3 * 5 < 200  # stopped after 3 evaluations
    per_token = pipeline.prior_nll(fit.prior, val).sum().item() / val.numel()
    assert per_token == pytest.approx(best["val_nll"], rel=1e-5)  # the returned prior is the best step's
    assert per_token < fit.history[-1]["val_nll"]


def _train_both(data: pipeline.Split, config: Config) -> dict[str, torch.Tensor]:
    tok = pipeline.train_tokenizer(pipeline.to_images(data.train), config=config, seed=3)
    tokens = [pipeline.encode(tok, pipeline.to_images(x)) for x in (data.train, data.val)]
    fit = pipeline.train_prior(*tokens, config=config, seed=3)
    return {f"tokenizer.{k}": v for k, v in tok.state_dict().items()} | {
        f"prior.{k}": v for k, v in fit.prior.state_dict().items()
    }


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    got = _train_both(_toy(), TINY)
    gathered = [None, None]
    dist.all_gather_object(gathered, got)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *, skip: str | None = None) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if not (skip and skip in k))


KEY_BIAS = "attn.k_proj.bias"  # its true gradient is 0 (q . b is the same for every key of a row)


def _same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], config: Config) -> None:
    """Every parameter and buffer within 1e-5, except the attention key biases: softmax ignores them, so
    their gradient is rounding noise that Adam scales up to steps of up to lr; that they change nothing is
    checked on the prior's log-likelihood instead."""
    assert _max_abs_diff(a, b, skip=KEY_BIAS) < 1e-5
    priors = []
    for s in (a, b):
        prior = pipeline.make_prior(config=config, seed=0)
        prior.load_state_dict({k.removeprefix("prior."): v for k, v in s.items() if k.startswith("prior.")})
        priors.append(prior.eval())
    tokens = torch.randint(0, config.num_codes, (20, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pipeline.prior_nll(priors[0], tokens), pipeline.prior_nll(priors[1], tokens))


def test_two_gloo_processes_train_the_models_of_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "states.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    rank0, rank1 = torch.load(out)
    single = _train_both(_toy(), TINY)
    untrained = _train_both(_toy(), replace(TINY, vq_steps=0, prior_steps=1))
    assert _max_abs_diff(rank0, rank1) == 0.0  # DDP keeps the ranks identical
    _same_model(rank0, single, TINY)
    assert _max_abs_diff(single, untrained) > 1e-3  # the steps moved the models


def test_torchrun_with_two_processes_gives_the_model_of_one_process(tmp_path):
    args = ["--data", "toy", "--vq-steps", "4", "--prior-steps", "4", "--eval-every", "2", "--samples", "4"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    subprocess.run([*cmd, "-m", "reference_impls.pipeline", *args, "--out", str(tmp_path / "two")], env=env, check=True)
    pipeline.main([*args, "--out", str(tmp_path / "one")])
    two, one = (torch.load(tmp_path / name / "model.pt") for name in ("two", "one"))
    _same_model(two, one, Config())
    assert torch.equal(torch.load(tmp_path / "two" / "samples.pt"), torch.load(tmp_path / "one" / "samples.pt"))
