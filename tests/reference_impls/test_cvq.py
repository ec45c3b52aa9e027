import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from gloo import free_port as _free_port

from reference_impls.cvq import OnlineClusteredQuantizer, anchor_weight
from reference_impls.vq import vq_losses

K, D = 16, 4


def _data(seed: int = 0, b: int = 8, s: int = 5) -> torch.Tensor:
    return torch.randn(b, D, s, generator=torch.Generator().manual_seed(seed))  # (B, D, S)


def _rows(z: torch.Tensor) -> torch.Tensor:
    return z.movedim(1, -1).reshape(-1, D)  # (N, D)


def _quantizer(distance: str = "l2") -> OnlineClusteredQuantizer:
    return OnlineClusteredQuantizer(K, D, distance=distance, generator=torch.Generator().manual_seed(1)).train()


def _nearest_feature(rows: torch.Tensor, code: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "l2":
        return rows[((rows - code) ** 2).sum(1).argmin()]
    return rows[F.cosine_similarity(rows, code[None], dim=1).argmax()]


@pytest.mark.parametrize("distance", ["l2", "cos"])
def test_a_dead_code_lands_on_its_nearest_feature_within_one_step(distance):
    vq = _quantizer(distance)
    z = _data()
    z[:, 0] = z[:, 0].abs() + 3.0  # every feature points along +e_0
    with torch.no_grad():
        vq.codebook.copy_(_rows(z)[:K])  # live codes on features
        vq.codebook[0] = torch.tensor([-40.0, 0.0, 0.0, 0.0])  # far, and pointing away: no feature chooses it
        vq.usage.fill_(1.0 / K)
        vq.usage[0] = 0.0  # and it has never been used
    rows = _rows(z)
    dead = vq.codebook[0].detach().clone()
    out = vq(z)
    assert not (out.indices == 0).any()
    anchor = _nearest_feature(rows, dead, distance)
    alpha = math.exp(-1e-3)  # N_0 = 0
    torch.testing.assert_close(vq.codebook[0].detach(), (1 - alpha) * dead + alpha * anchor)
    assert (vq.codebook[0] - anchor).norm() < 1e-3 * (dead - anchor).norm() + 1e-6  # on the data


def test_a_well_used_code_is_untouched_by_the_anchor_term():
    vq = _quantizer()
    with torch.no_grad():
        vq.codebook.copy_(torch.randn(K, D, generator=torch.Generator().manual_seed(2)))
        vq.usage.fill_(1.0 / K)  # uniform use so far
        vq.usage[0] = 0.0
    before = vq.codebook.detach().clone()
    vq(_data())
    assert torch.equal(vq.codebook[1:], before[1:])  # alpha = exp(-~1000) = 0: bit for bit unchanged
    assert not torch.allclose(vq.codebook[0], before[0])  # while the dead one moved


def test_anchor_weight_is_the_released_formula():
    usage = torch.tensor([0.0, 1e-4, 1.0 / K])
    got = anchor_weight(usage, K, 0.99)
    expected = torch.tensor([math.exp(-1e-3), math.exp(-1e-4 * K * 10 / 0.01 - 1e-3), 0.0])
    torch.testing.assert_close(got, expected)  # exp(-1.601) for the rarely used one


def test_usage_ema_equals_its_closed_form():
    vq, gamma, steps = _quantizer(), 0.99, 5
    freqs = []
    for t in range(steps):
        out = vq(_data(seed=t))
        freqs.append(torch.bincount(out.indices.reshape(-1), minlength=K).float() / out.indices.numel())
    # N_k = (1 - gamma) sum_t gamma^(T - 1 - t) p_k^(t), from N_k = 0
    expected = sum((1 - gamma) * gamma ** (steps - 1 - t) * p for t, p in enumerate(freqs))
    torch.testing.assert_close(vq.usage, expected)
    assert vq.usage.sum() == pytest.approx(1 - gamma**steps, rel=1e-5)


def test_output_and_loss_use_the_codes_from_before_the_reseeding():
    vq = _quantizer("cos")
    z = _data(seed=3).requires_grad_(True)
    before = vq.codebook.detach().clone()
    out = vq(z)
    rows = _rows(z.detach())
    k = F.cosine_similarity(rows[:, None], before[None], dim=2).argmax(1)  # cosine lookup
    assert torch.equal(out.indices.reshape(-1), k)
    assert not torch.equal(vq.codebook.detach(), before), "the fresh codebook is re-seeded"
    torch.testing.assert_close(_rows(out.z_q.detach()), before[k])
    _, _, loss = vq_losses(rows, before[k], 0.25)
    torch.testing.assert_close(out.loss, loss)
    w = torch.randn_like(z)
    (z_grad,) = torch.autograd.grad((out.z_q * w).sum(), z)
    torch.testing.assert_close(z_grad, w)  # straight-through


STEPS = 3


def _batches() -> list[torch.Tensor]:
    # the halves differ, so each rank's nearest features and usage differ from the global ones
    return [torch.cat([_data(10 + t, b=4), 2.0 + 3.0 * _data(20 + t, b=4)]) for t in range(STEPS)]


def _spread() -> OnlineClusteredQuantizer:
    vq = _quantizer()
    with torch.no_grad():  # codes over both halves' regions, so nearest features come from either rank
        vq.codebook.copy_(1.0 + 3.0 * torch.randn(K, D, generator=torch.Generator().manual_seed(3)))
    return vq


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    vq = _spread()
    for z in _batches():
        vq(z.chunk(2)[rank])  # this rank's half of the global batch
    state = torch.cat([vq.codebook.detach(), vq.usage[:, None]], dim=1)  # (K, D + 1)
    gathered = [torch.empty_like(state) for _ in range(2)]
    dist.all_gather(gathered, state)
    if rank == 0:
        torch.save(torch.stack(gathered), out)
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_codebook_and_usage_of_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "state.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    single, half = _spread(), _spread()
    for z in _batches():
        single(z)
        half(z.chunk(2)[0])
    both = torch.load(out)  # (2 ranks, K, D + 1)
    expected = torch.cat([single.codebook.detach(), single.usage[:, None]], dim=1)
    alone = torch.cat([half.codebook.detach(), half.usage[:, None]], dim=1)
    assert not torch.allclose(expected, alone, atol=0.1), "one rank alone would keep another codebook"
    torch.testing.assert_close(both[0], both[1], rtol=0, atol=0)
    torch.testing.assert_close(both[0], expected, rtol=1e-5, atol=1e-6)
