"""The EMA quantiser under torch.distributed: two gloo processes on the CPU, each fed half of a
global batch, keep the codebook of one process fed the whole batch; and the training-mode forward
returns the codes from before the update."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo import free_port as _free_port

from reference_impls.jukebox import RestartingQuantizer
from reference_impls.vq import VectorQuantizer

STEPS, BATCH, DIM, CODES = 3, 8, 4, 16


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(BATCH, DIM, 5, generator=g) for _ in range(STEPS)]  # (B, D, S) each


def _quantizer() -> VectorQuantizer:
    torch.manual_seed(1)
    return VectorQuantizer(CODES, DIM, ema=True).train()


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    vq = _quantizer()
    for z in _batches():
        vq(z.chunk(2)[rank])  # this rank's half of the global batch
    if rank == 0:
        torch.save(vq.codebook.clone(), out)
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_codebook_of_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "codebook.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    single = _quantizer()
    for z in _batches():
        single(z)
    two = torch.load(out)
    assert not torch.equal(single.codebook, _quantizer().codebook), "the EMA steps moved the codebook"
    torch.testing.assert_close(two, single.codebook, rtol=1e-5, atol=1e-6)


def test_training_forward_returns_the_codes_from_before_the_ema_update():
    vq = _quantizer()
    z = _batches()[0]
    before = vq.codebook.clone()
    out = vq(z)
    expected = before[out.indices.reshape(-1)]  # (N, D) codes chosen, as they were before the step
    rows = out.z_q.movedim(1, -1).reshape(-1, DIM)
    torch.testing.assert_close(rows, expected)
    assert not torch.equal(vq.codebook, before)
    torch.testing.assert_close(out.commitment_loss, ((z.movedim(1, -1).reshape(-1, DIM) - expected) ** 2).mean())


def _restarting(seed: int) -> RestartingQuantizer:
    torch.manual_seed(1)
    return RestartingQuantizer(CODES, DIM, threshold=1.0, generator=torch.Generator().manual_seed(seed)).train()


def _restart_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    vq = _restarting(seed=7)  # the same initial codebook on each rank, as DDP broadcasts it
    if rank == 1:
        vq.generator.manual_seed(99)  # the ranks' generators now differ: only rank 0's draws may count
    for z in _batches():
        vq(z.chunk(2)[rank])
    gathered = [torch.empty_like(vq.codebook) for _ in range(2)]
    dist.all_gather(gathered, vq.codebook)
    if rank == 0:
        torch.save(torch.stack(gathered), out)
    dist.destroy_process_group()


def test_two_gloo_processes_restart_dead_codes_as_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "codebooks.pt")
    mp.spawn(_restart_worker, args=(_free_port(), out), nprocs=2, join=True)
    single = _restarting(seed=7)
    restarted = 0
    for z in _batches():
        single(z)
        restarted += int((single.cluster_size < 1.0).sum())
    both = torch.load(out)  # (2, K, D) the codebook of each rank
    torch.testing.assert_close(both[1], both[0], rtol=0, atol=0)  # the ranks agree exactly
    torch.testing.assert_close(both[0], single.codebook, rtol=1e-5, atol=1e-6)
    assert restarted > 0, "the toy restarts codes, so the test exercises the restart path"


def _kmeans_worker(rank: int, port: int, out: str) -> None:
    from reference_impls.ar_prior import kmeans

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = _kmeans_rows()
    local = rows[:37] if rank == 0 else rows[37:]  # uneven shares of the rows
    centroids, labels = kmeans(local, 6, n_iters=10, generator=torch.Generator().manual_seed(3), sharded=True)
    torch.save((centroids, labels), f"{out}.{rank}")
    dist.destroy_process_group()


def _kmeans_rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(6, 3, generator=g) * 4
    return centres[torch.randint(0, 6, (80,), generator=g)] + torch.randn(80, 3, generator=g)  # (80, 3)


def test_kmeans_on_two_gloo_processes_gives_the_centroids_of_one_process_fed_all_rows(tmp_path):
    from reference_impls.ar_prior import kmeans

    out = str(tmp_path / "kmeans")
    mp.spawn(_kmeans_worker, args=(_free_port(), out), nprocs=2, join=True)
    rows = _kmeans_rows()
    single, labels = kmeans(rows, 6, n_iters=10, generator=torch.Generator().manual_seed(3))
    (c0, l0), (c1, l1) = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    torch.testing.assert_close(c0, single)
    torch.testing.assert_close(c1, single)
    assert torch.equal(torch.cat([l0, l1]), labels), "each rank gets the labels of its own rows"
    half, _ = kmeans(rows[:37], 6, n_iters=10, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(half, single), "one rank's rows alone give other centroids"
