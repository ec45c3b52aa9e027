"""EnCodec's released residual quantiser (residual_vq.EncodecRVQ) under torch.distributed: two gloo
processes on the CPU, each fed half of every global batch, end with the k-means initialisation and the
EMA codebooks, counts and sums of one process fed the whole batches."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo import free_port as _free_port

from reference_impls.residual_vq import EncodecRVQ, kmeans

STEPS, BATCH, DIM, CODES, DEPTH = 3, 6, 3, 8, 2


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(BATCH, DIM, 5, generator=g) for _ in range(STEPS)]  # (B, C, T) each


def _quantizer() -> EncodecRVQ:
    # the same generator seed on every rank: the k-means starting rows are drawn from the global batch
    return EncodecRVQ(CODES, DIM, DEPTH, kmeans_iters=4, generator=torch.Generator().manual_seed(1)).train()


def _state(q: EncodecRVQ) -> torch.Tensor:
    return torch.cat([q.codebook.flatten(), q.cluster_size.flatten(), q.embed_sum.flatten()])


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rows = _batches()[0].movedim(1, -1).reshape(-1, DIM)
    means, bins = kmeans(rows.chunk(2)[rank], CODES, iters=4, generator=torch.Generator().manual_seed(1))
    q = _quantizer()
    for z in _batches():
        q(z.chunk(2)[rank])  # this rank's half of the global batch
    gathered = [torch.empty_like(_state(q)) for _ in range(2)]
    dist.all_gather(gathered, _state(q))
    if rank == 0:
        torch.save({"kmeans": (means, bins), "states": torch.stack(gathered)}, out)
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_kmeans_and_ema_codebooks_of_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "state.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    saved = torch.load(out)
    rows = _batches()[0].movedim(1, -1).reshape(-1, DIM)
    means, bins = kmeans(rows, CODES, iters=4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(saved["kmeans"][0], means, rtol=1e-6, atol=1e-6)  # k-means of the global batch
    assert torch.equal(saved["kmeans"][1], bins)
    single = _quantizer()
    for z in _batches():
        single(z)
    states = saved["states"]  # (2, S): the state of each rank
    torch.testing.assert_close(states[1], states[0], rtol=0, atol=0)  # the ranks agree exactly
    torch.testing.assert_close(states[0], _state(single), rtol=1e-5, atol=1e-6)
    assert single.inited.all() and not torch.equal(single.codebook[1], single.codebook[0])
