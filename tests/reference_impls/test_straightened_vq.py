import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo import free_port as _free_port

from reference_impls.straightened_vq import StraightenedVQ, batch_moments, synchronized_straight_through
from reference_impls.vq import VectorQuantizer

K, D = 16, 4


def _data(seed: int = 0, b: int = 8, s: int = 5) -> torch.Tensor:
    return torch.randn(b, D, s, generator=torch.Generator().manual_seed(seed))  # (B, D, S)


def _rows(z: torch.Tensor) -> torch.Tensor:
    return z.movedim(1, -1).reshape(-1, D)  # (N, D)


def _far_code_quantizer(**kw) -> StraightenedVQ:
    vq = StraightenedVQ(K, D, generator=torch.Generator().manual_seed(1), **kw)
    with torch.no_grad():
        vq.codebook[0] = 50.0  # far from every (unit-scale) input: never chosen
    return vq


def _running() -> StraightenedVQ:
    g = torch.Generator().manual_seed(1)
    return StraightenedVQ(K, D, affine_lr=1.0, running_statistics=True, generator=g).train()


def test_a_code_never_chosen_moves_after_one_step_on_the_shared_affine_parameters():
    z = _data()
    moved = {}
    for affine_lr in (0.0, 10.0):
        vq = _far_code_quantizer(affine_lr=affine_lr).train()
        opt = torch.optim.SGD(vq.parameters(), lr=0.01)
        before = vq.codes().detach().clone()
        out = vq(z)
        assert not (out.indices == 0).any(), "code 0 is never chosen"
        (out.loss + (out.z_q**2).mean()).backward()
        assert vq.codebook.grad[0].abs().max() == 0, "the unchosen raw code gets no gradient"
        opt.step()
        moved[affine_lr] = (vq.codes().detach()[0] - before[0]).abs().max().item()
    assert moved[0.0] == 0.0  # plain VQ: a dead code stays where it is
    assert moved[10.0] > 1e-3  # the shared scale and shift move it with the used codes


def test_reparameterised_lookup_equals_plain_vq_on_the_transformed_table():
    z = _data(seed=3).requires_grad_(True)
    vq = StraightenedVQ(K, D, affine_lr=10.0, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        vq.affine.scale.copy_(0.1 * torch.randn(D, generator=g))
        vq.affine.shift.copy_(0.1 * torch.randn(D, generator=g))
    table = vq.codes().detach()
    plain = VectorQuantizer(K, D)
    with torch.no_grad():
        plain.codebook.copy_(table)
    a, b = vq(z), plain(z)
    assert not torch.allclose(table, vq.codebook), "the affine map is not the identity here"
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(a.z_q, b.z_q)
    torch.testing.assert_close(a.codebook_loss, b.codebook_loss)
    torch.testing.assert_close(a.commitment_loss, b.commitment_loss)
    torch.testing.assert_close(a.loss, 0.95 * b.codebook_loss + 0.05 * b.commitment_loss)  # beta on the codebook term
    # with nu = 0 the encoder gets the same straight-through gradient from both
    w = torch.randn_like(z)
    (ga,) = torch.autograd.grad((a.z_q * w).sum(), z)
    (gb,) = torch.autograd.grad((b.z_q * w).sum(), z)
    torch.testing.assert_close(ga, gb)


def test_synchronised_update_gives_the_chosen_code_nu_times_the_decoder_gradient():
    nu, beta, affine_lr = 0.2, 0.95, 10.0
    z = _data(seed=4).requires_grad_(True)
    vq = StraightenedVQ(K, D, beta=beta, sync_nu=nu, affine_lr=affine_lr, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        vq.affine.scale.fill_(0.03)  # scale 1.3 on every feature
    out = vq(z)
    w = torch.randn_like(z)  # the decoder's gradient at z_q
    ((out.z_q * w).sum() + out.loss).backward()
    rows, g, k = _rows(z.detach()), _rows(w), out.indices.reshape(-1)
    codes = vq.codes().detach()  # c'
    n = rows.numel()
    grad_c_prime = torch.zeros(K, D).index_add_(0, k, nu * g + beta * 2 * (codes[k] - rows) / n)
    scale = 1 + affine_lr * 0.03
    torch.testing.assert_close(vq.codebook.grad, scale * grad_c_prime)  # dc'/dc = scale
    torch.testing.assert_close(vq.affine.shift.grad, affine_lr * grad_c_prime.sum(0))
    torch.testing.assert_close(vq.affine.scale.grad, affine_lr * (grad_c_prime * vq.codebook.detach()).sum(0))
    # the encoder: the decoder gradient unchanged plus the (1 - beta) commitment term
    torch.testing.assert_close(_rows(z.grad), g + (1 - beta) * 2 * (rows - codes[k]) / n)
    torch.testing.assert_close(out.z_q, vq.codes().detach()[out.indices].movedim(-1, 1))  # value: c'_k


def test_synchronised_straight_through_with_nu_zero_gives_the_codes_no_decoder_gradient():
    z_e = torch.randn(6, D, requires_grad=True)
    z_q = torch.randn(6, D, requires_grad=True)
    out = synchronized_straight_through(z_e, z_q, 0.0)
    out.sum().backward()
    assert z_q.grad is None and torch.equal(z_e.grad, torch.ones(6, D))


def test_alternating_step_moves_the_chosen_codes_by_one_sgd_step_before_the_output_is_read():
    lr = 0.5
    z = _data(seed=5)
    vq = _far_code_quantizer(beta=1.0, inner_optimizer=lambda p: torch.optim.SGD(p, lr=lr)).train()
    before = vq.codebook.detach().clone()
    rows = _rows(z)
    k = torch.cdist(rows, before).argmin(1)
    out = vq(z)
    assert torch.equal(out.indices.reshape(-1), k)  # assignments from the codes before the step
    grad = torch.zeros(K, D).index_add_(0, k, 2 * (before[k] - rows) / rows.numel())
    torch.testing.assert_close(vq.codebook.detach(), before - lr * grad)
    assert torch.equal(vq.codebook[0], before[0])  # the unchosen code takes no inner step
    torch.testing.assert_close(_rows(out.z_q.detach()), vq.codebook.detach()[k])  # output read after the step
    error_before = ((before[k] - rows) ** 2).mean()
    assert out.codebook_loss < error_before  # the step shrinks the STE's gap z_q - z_e
    assert vq.codebook.grad is None  # the inner step leaves the outer gradient alone


def test_alternating_step_requires_beta_one():
    with pytest.raises(ValueError):
        StraightenedVQ(K, D, beta=0.95, inner_optimizer=lambda p: torch.optim.SGD(p, lr=1.0))


def test_running_statistics_match_the_codes_moments_to_the_encoder_outputs_on_the_first_batch():
    z = 3.0 + 2.0 * _data(seed=6)  # mean 3, std 2: far from the N(0, 1) codebook
    vq = _running()
    vq(z)
    codes, rows = vq.codes().detach(), _rows(z)
    torch.testing.assert_close(codes.mean(0), rows.mean(0))
    torch.testing.assert_close(codes.var(0, unbiased=False), rows.var(0, unbiased=False), rtol=1e-4, atol=1e-5)
    first = vq.affine.z_mean.clone()
    z2 = _data(seed=7)
    vq(z2)  # then a running average with momentum 0.1
    torch.testing.assert_close(vq.affine.z_mean, 0.9 * first + 0.1 * _rows(z2).mean(0))


STEPS = 3


def _batches() -> list[torch.Tensor]:
    # the two halves differ in mean and spread, so one rank's moments are not the global ones
    return [torch.cat([_data(10 + t, b=4), 2.0 + 3.0 * _data(20 + t, b=4)]) for t in range(STEPS)]


def _alternating() -> StraightenedVQ:
    inner = lambda p: torch.optim.SGD(p, lr=5.0, momentum=0.9)  # noqa: E731
    vq = StraightenedVQ(K, D, beta=1.0, inner_optimizer=inner, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        vq.codebook.mul_(2.0).add_(1.0)  # spread over both halves' regions
    return vq.train()


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    vq = _running()
    for z in _batches():
        vq(z.chunk(2)[rank])  # this rank's half of the global batch
    stats = torch.stack([vq.affine.z_mean, vq.affine.z_var])
    alt = _alternating()
    for z in _batches():
        alt(z.chunk(2)[rank])
    state = torch.cat([stats, alt.codebook.detach()])  # (2 + K, D)
    gathered = [torch.empty_like(state) for _ in range(2)]
    dist.all_gather(gathered, state)
    if rank == 0:
        torch.save(torch.stack(gathered), out)
    dist.destroy_process_group()


def test_two_gloo_processes_keep_the_moments_and_alternating_codebook_of_one_process_fed_the_whole_batch(tmp_path):
    out = str(tmp_path / "state.pt")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    single, half, alt, alt_half = _running(), _running(), _alternating(), _alternating()
    for z in _batches():
        single(z)
        half(z.chunk(2)[0])
        alt(z)
        alt_half(z.chunk(2)[0])
    both = torch.load(out)  # (2 ranks, 2 + K, D): running mean, running variance, the alternating codebook
    expected = torch.cat([single.affine.z_mean[None], single.affine.z_var[None], alt.codebook.detach()])
    alone = torch.cat([half.affine.z_mean[None], half.affine.z_var[None], alt_half.codebook.detach()])
    assert not torch.allclose(expected[:2], alone[:2], atol=0.1), "one rank's moments are not the global ones"
    assert not torch.allclose(expected[2:], alone[2:], atol=0.1), "nor is one rank's inner step"
    torch.testing.assert_close(both[0], both[1], rtol=0, atol=0)
    torch.testing.assert_close(both[0], expected, rtol=1e-5, atol=1e-5)


def test_batch_moments_are_the_biased_mean_and_variance_without_a_process_group():
    z = _rows(_data(seed=8))
    mean, var = batch_moments(z)
    torch.testing.assert_close(mean, z.mean(0))
    torch.testing.assert_close(var, z.var(0, unbiased=False))
