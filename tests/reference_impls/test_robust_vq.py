"""Robust VQ training (Lancucki et al. 2020): the reservoir is a uniform sample of the stream,
k-means re-estimation replaces the whole codebook by centroids of the reservoir and revives a
collapsed codebook, the codebook's learning rate is 10x, the encoder outputs are batch-normalised,
and two gloo processes keep the model of one process fed the whole batch."""

import math
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo import free_port as _free_port

from reference_impls.robust_vq import (
    BatchNormRows,
    ReservoirSampler,
    RobustVQ,
    code_usage,
    parameter_groups,
    reestimate_codebook,
)
from reference_impls.vq import nearest_code, perplexity


def _clusters(n: int, k: int, dim: int, seed: int) -> torch.Tensor:
    """n rows around k well-separated centres: (n, dim)."""
    g = torch.Generator().manual_seed(seed)
    centres = 6 * torch.randn(k, dim, generator=g)
    return centres[torch.randint(0, k, (n,), generator=g)] + 0.3 * torch.randn(n, dim, generator=g)


def test_reservoir_holds_each_row_of_the_stream_with_probability_size_over_length():
    # Algorithm R: after t rows each one is held with probability n / t. A slot drawn from
    # {0 .. t - 1} instead of {0 .. t} (DistSup's comment "includes right end too") keeps the
    # first rows with probability 2/11 instead of 1/4 here: about 10 binomial sd off.
    size, length, runs = 3, 12, 3000
    batches = [2, 4, 1, 5]  # crosses the moment the reservoir fills, then keeps sampling
    stream = torch.arange(length, dtype=torch.float32)[:, None]  # row i holds the value i
    held = torch.zeros(length)
    for seed in range(runs):
        res = ReservoirSampler(size, 1, generator=torch.Generator().manual_seed(seed))
        for part in stream.split(batches):
            res.add(part)
        assert int(res.seen) == length
        rows = res.contents()[:, 0].long()
        assert len(rows) == size and len(set(rows.tolist())) == size  # n distinct rows of the stream
        held[rows] += 1
    p = size / length
    sd = math.sqrt(runs * p * (1 - p))  # binomial sd of each row's count
    assert (held - runs * p).abs().max() < 4.5 * sd, held


def test_reservoir_is_the_same_whether_the_stream_comes_in_one_batch_or_row_by_row():
    # Rows of one batch that draw the same slot are applied in stream order (the last wins), so the
    # vectorised add equals DistSup's row-by-row loop given the same draws.
    stream = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    whole = ReservoirSampler(16, 2, generator=torch.Generator().manual_seed(5))
    whole.add(stream)
    one_by_one = ReservoirSampler(16, 2, generator=torch.Generator().manual_seed(5))
    for row in stream.split(1):
        one_by_one.add(row)
    assert torch.equal(whole.contents(), one_by_one.contents())


def _collapsed_model(seed: int) -> RobustVQ:
    torch.manual_seed(seed)
    model = RobustVQ(16, 2, 2, reservoir_size=256, generator=torch.Generator().manual_seed(seed)).train()
    with torch.no_grad():
        model.projection.weight.copy_(torch.eye(2))
        model.projection.bias.zero_()
        model.vq.codebook.copy_(torch.tensor([10.0, 10.0]) + 0.01 * torch.randn(16, 2))  # far from the data
        model.vq.codebook[0] = torch.tensor([0.0, 0.0])  # one code at the data's mean wins every row
    return model


def _feed(model: RobustVQ, data: torch.Tensor, batch: int = 64) -> list:
    return [model(part.t()[None]) for part in data.split(batch)]  # (1, D, batch) maps


def _off_centroid(codes: torch.Tensor, rows: torch.Tensor) -> float:
    """Largest distance of a code from the mean of the rows nearest to it (inf for a memberless code)."""
    labels = nearest_code(rows, codes)
    return max(
        (codes[k] - rows[labels == k].mean(dim=0)).abs().max().item() if (labels == k).any() else math.inf
        for k in range(len(codes))
    )


def test_reestimation_makes_every_code_the_mean_of_its_reservoir_members():
    # An unclustered blob, on which Lloyd's algorithm needs about 20 iterations: after one
    # iteration the codes are still up to 0.3 away from the means of their members.
    model = _collapsed_model(0)
    _feed(model, torch.randn(640, 2, generator=torch.Generator().manual_seed(1)))
    reservoir = model.reservoir.contents().clone()  # (256, d), emptied by reestimate
    early = model.vq.codebook.detach().clone()
    reestimate_codebook(early, reservoir, n_iters=1, generator=torch.Generator().manual_seed(0))
    assert _off_centroid(early, reservoir) > 0.05
    assert model.reestimate()
    assert _off_centroid(model.vq.codebook.detach(), reservoir) < 1e-5  # every code has members, at their mean
    assert int(model.reservoir.seen) == 0  # the reservoir is emptied after a re-estimation


def test_reestimation_replaces_the_whole_codebook_not_only_dead_codes():
    # DistSup's VQBottleneck.reestimate overwrites all K codewords: the one code in use moves too.
    model = _collapsed_model(0)
    outs = _feed(model, _clusters(640, 16, 2, seed=1))
    used = torch.cat([o.indices.reshape(-1) for o in outs]).unique()
    assert used.tolist() == [0]
    before = model.vq.codebook.detach().clone()
    model.reestimate()
    moved = (model.vq.codebook.detach() - before).norm(dim=1)  # (K,)
    assert moved[0] > 1e-2 and bool((moved > 1e-2).all())


def test_reestimation_raises_usage_and_perplexity_of_a_collapsed_codebook():
    model = _collapsed_model(0)
    data = _clusters(640, 16, 2, seed=1)
    before = torch.cat([o.indices.reshape(-1) for o in _feed(model, data)])
    model.reestimate()
    after = torch.cat([o.indices.reshape(-1) for o in _feed(model, data)])
    assert code_usage(before, 16) == 1 / 16 and perplexity(before, 16) < 1.01
    assert code_usage(after, 16) == 1.0
    assert perplexity(after, 16) > 10.0  # of 16; the clusters are of unequal size


def test_reestimation_is_skipped_while_the_reservoir_holds_fewer_rows_than_codes():
    codebook = torch.zeros(8, 2)
    assert not reestimate_codebook(codebook, torch.randn(7, 2))
    assert torch.equal(codebook, torch.zeros(8, 2))


def test_codebook_parameter_group_has_ten_times_the_learning_rate():
    # Adam's first step moves every parameter with a non-zero gradient by about its group's lr.
    torch.manual_seed(0)
    model = RobustVQ(8, 3, 2, reservoir_size=64).train()
    groups = parameter_groups(model, model.vq.codebook, lr=5e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups[0]["params"]] == ["vq.codebook"]
    assert sorted(names[id(p)] for p in groups[1]["params"]) == sorted(set(names.values()) - {"vq.codebook"})
    opt = torch.optim.Adam(groups, lr=5e-4)
    assert [g["lr"] for g in opt.param_groups] == [5e-3, 5e-4]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(torch.randn(4, 3, 6))
    (out.loss + out.z_q.pow(2).mean()).backward()
    opt.step()
    step = {n: (p.detach() - before[n]).abs() for n, p in model.named_parameters()}
    used = model.vq.codebook.grad.abs().sum(dim=1) > 0
    torch.testing.assert_close(
        step["vq.codebook"][used], torch.full_like(step["vq.codebook"][used], 5e-3), rtol=1e-3, atol=0
    )
    w = step["projection.weight"]
    torch.testing.assert_close(w, torch.full_like(w, 5e-4), rtol=1e-3, atol=0)


def test_batch_norm_rows_equals_torch_batchnorm1d_in_one_process():
    g = torch.Generator().manual_seed(0)
    x = (5 + 3 * torch.randn(32, 4, generator=g)).requires_grad_()
    ours, ref = BatchNormRows(4).train(), torch.nn.BatchNorm1d(4).train()
    w = torch.randn(32, 4, generator=g)
    y = ours(x)
    (gx,) = torch.autograd.grad((y * w).sum(), x)
    y_ref = ref(x)
    (gx_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))


def test_encoder_outputs_reach_the_quantiser_batch_normalised():
    torch.manual_seed(0)
    model = RobustVQ(8, 3, 3, reservoir_size=256).train()
    with torch.no_grad():
        model.projection.weight.copy_(torch.eye(3))
        model.projection.bias.zero_()
    z_e = 7 + 4 * torch.randn(2, 3, 50)  # far from zero mean, unit variance
    model(z_e)
    rows = model.reservoir.contents()  # (100, 3): what the quantiser saw
    torch.testing.assert_close(rows.mean(dim=0), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(rows.var(dim=0, unbiased=False), torch.ones(3), rtol=0, atol=1e-3)


# --- torch.distributed: two gloo processes against one process fed the whole batch ---------------

STEPS, BATCH, IN_DIM, CODE_DIM, CODES, RESERVOIR = 3, 4, 3, 2, 6, 24


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    maps = [2 + torch.randn(BATCH, IN_DIM, 5, generator=g) for _ in range(STEPS)]  # (B, D_in, S)
    weights = [torch.randn(BATCH, CODE_DIM, 5, generator=g) for _ in range(STEPS)]  # fixed loss weights
    return list(zip(maps, weights, strict=True))


def _model() -> RobustVQ:
    torch.manual_seed(1)  # the same initial weights on every rank, as DDP broadcasts them
    return RobustVQ(CODES, IN_DIM, CODE_DIM, reservoir_size=RESERVOIR, generator=torch.Generator().manual_seed(7))


def _run(model: RobustVQ, rank: int | None) -> dict:
    """Forward and backward of each batch (this rank's half, or all of it), then a re-estimation."""
    grads = []
    for z, w in _batches():
        if rank is not None:
            z, w = z.chunk(2)[rank], w.chunk(2)[rank]
        z = z.clone().requires_grad_()
        (model(z).z_q * w).sum().backward()
        grads.append(z.grad)
    reservoir = model.reservoir.contents().clone()
    assert model.reestimate()
    return {
        "grads": grads,
        "reservoir": reservoir,
        "running_mean": model.norm.running_mean.clone(),
        "running_var": model.norm.running_var.clone(),
        "codebook": model.vq.codebook.detach().clone(),
    }


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = _model().train()
    if rank == 1:
        model.generator.manual_seed(99)  # the ranks' generators differ: only rank 0's draws may count
    result = _run(model, rank)
    gathered = [torch.empty_like(result["codebook"]) for _ in range(2)]
    dist.all_gather(gathered, result["codebook"])
    result["codebooks"] = torch.stack(gathered)
    torch.save(result, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_batch_norm_reservoir_and_codebook_of_one_process(tmp_path):
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    single = _run(_model().train(), None)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    assert int(STEPS * BATCH * 5) > RESERVOIR  # the reservoir sampled past filling up
    torch.testing.assert_close(ranks[0]["codebooks"][1], ranks[0]["codebooks"][0], rtol=0, atol=0)
    for r, got in enumerate(ranks):
        torch.testing.assert_close(got["reservoir"], single["reservoir"], rtol=0, atol=1e-5)
        torch.testing.assert_close(got["running_mean"], single["running_mean"])
        torch.testing.assert_close(got["running_var"], single["running_var"])
        torch.testing.assert_close(got["codebook"], single["codebook"], rtol=1e-5, atol=1e-5)
        for g_rank, g_single in zip(got["grads"], single["grads"], strict=True):
            torch.testing.assert_close(g_rank, g_single.chunk(2)[r], rtol=1e-5, atol=1e-6)
