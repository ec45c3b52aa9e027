import pytest
import torch
import torch.nn.functional as F

from reference_impls.dac import DACQuantizer, FactorizedLevel, draw_num_quantizers
from reference_impls.residual_vq import residual_quantize


def _dac(depth=4, num_codes=32, dim=16, seed=0, **kw):
    return DACQuantizer(num_codes, dim, depth, code_dim=4, generator=torch.Generator().manual_seed(seed), **kw)


def test_code_lookup_is_the_cosine_argmax_in_the_low_dimension():
    g = torch.Generator().manual_seed(1)
    lvl = FactorizedLevel(64, 16, 4, generator=g)
    with torch.no_grad():  # codes of very different lengths, so cosine and Euclidean choices disagree
        lvl.codebook.mul_(torch.rand(64, 1, generator=g) * 5 + 0.1)
    r = torch.randn(500, 16, generator=g)
    z = lvl.in_proj(r).detach()  # (N, 4)
    cosine = F.normalize(z, dim=1) @ F.normalize(lvl.codebook.detach(), dim=1).t()
    assert torch.equal(lvl.choose(r), cosine.argmax(1))
    euclid = torch.cdist(z, lvl.codebook.detach()).argmin(1)
    assert (euclid != cosine.argmax(1)).float().mean() > 0.2  # the test can tell the two apart
    with torch.no_grad():  # only directions matter: rescaling every code leaves the choice unchanged
        lvl.codebook.mul_(torch.rand(64, 1, generator=g) * 10 + 0.01)
    assert torch.equal(lvl.choose(r), cosine.argmax(1))


def test_each_level_quantises_what_the_previous_levels_left_over():
    dac = _dac().eval()
    z = torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(2))
    out = dac(z)
    rows = z.movedim(1, -1).reshape(-1, 16)
    residual = rows
    for d, lvl in enumerate(dac.levels):
        k = lvl.choose(residual)
        assert torch.equal(out.indices.reshape(-1, 4)[:, d], k)
        residual = residual - lvl.table()[k]
    assert torch.allclose(out.z_q, dac.lookup(out.indices), atol=1e-5)
    # the output is the raw code projected out (the official code decodes unnormalised rows)
    lvl = dac.levels[0]
    first = out.indices.reshape(-1, 4)[:, 0]
    assert torch.allclose(
        out.partial_sums[0].movedim(1, -1).reshape(-1, 16), lvl.out_proj(lvl.codebook[first]), atol=1e-5
    )


def test_dropout_uses_only_the_first_n_codebooks():
    dac = _dac(dropout=1.0).train()
    z = torch.randn(64, 16, 3, generator=torch.Generator().manual_seed(3))
    dac.generator = torch.Generator().manual_seed(42)
    out = dac(z)
    n = out.num_quantizers
    assert set(n.tolist()) == {1, 2, 3, 4}  # every sample dropped to some n_q in 1..4
    for b in range(64):
        first_n = out.indices[b : b + 1, ..., : n[b]]
        assert torch.allclose(out.z_q[b : b + 1], dac.lookup(first_n), atol=1e-5)
    # changing the last level leaves every sample that stopped before it unchanged, and only those
    with torch.no_grad():
        dac.levels[3].out_proj.bias.add_(5.0)
    dac.generator = torch.Generator().manual_seed(42)
    again = dac(z)
    assert torch.equal(again.num_quantizers, n)
    same = (again.z_q - out.z_q).abs().amax(dim=(1, 2)) < 1e-6
    assert torch.equal(same, n < 4)


def test_inference_at_a_chosen_bitrate_runs_only_the_first_n_levels():
    dac = _dac().eval()
    z = torch.randn(3, 16, 5, generator=torch.Generator().manual_seed(4))
    two = dac(z, n_q=2)
    assert two.indices.shape == (3, 5, 2) and two.num_quantizers.tolist() == [2, 2, 2]
    full = dac(z)
    assert torch.equal(full.indices[..., :2], two.indices)  # greedy: the prefix does not depend on later levels
    with torch.no_grad():
        dac.levels[2].codebook.mul_(-3.0)
        dac.levels[3].out_proj.weight.mul_(7.0)
    assert torch.allclose(dac(z, n_q=2).z_q, two.z_q)
    with pytest.raises(ValueError, match="n_q must be in"):
        dac(z, n_q=5)


def test_dropout_probability_and_the_uniform_draw():
    g = torch.Generator().manual_seed(5)
    n = draw_num_quantizers(40000, 9, 0.5, g)
    assert abs((n < 9).float().mean().item() - 0.5 * 8 / 9) < 0.01  # dropped and drew fewer than 9
    assert abs((n == 1).float().mean().item() - 0.5 / 9) < 0.006
    assert torch.equal(draw_num_quantizers(100, 9, 0.0, g), torch.full((100,), 9))


def test_losses_of_a_dropped_level_are_zero_and_the_encoder_gets_gradient():
    dac = _dac(depth=3, dropout=0.0).train()
    z = torch.randn(4, 16, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    out = dac(z, n_q=1)  # only level 1 counts
    ref = _dac(depth=1, dropout=0.0).train()
    ref.levels[0].load_state_dict(dac.levels[0].state_dict())
    one = ref(z)
    assert torch.allclose(out.loss, one.loss) and torch.allclose(out.z_q, one.z_q)
    out.z_q.sum().backward()
    assert z.grad.abs().sum() > 0


def test_residual_quantize_hook_replaces_only_the_choice_of_index():
    g = torch.Generator().manual_seed(7)
    books = [torch.randn(5, 3, generator=g) for _ in range(2)]
    z = torch.randn(10, 3, generator=g)
    always_two = [lambda r: torch.full((r.shape[0],), 2)] * 2
    idx, codes = residual_quantize(z, books, lookups=always_two)
    assert (idx == 2).all() and torch.equal(codes[1], books[1][[2] * 10])
