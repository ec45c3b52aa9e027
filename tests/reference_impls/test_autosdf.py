import torch

from reference_impls.autosdf import (
    PatchVQVAE,
    RandomOrderPrior,
    fold_grid,
    random_order,
    random_order_mask,
    unfold_patches,
)


def _pvq(seed=0):
    torch.manual_seed(seed)
    return PatchVQVAE(grid=16, patch=4, generator=torch.Generator().manual_seed(seed))


def test_unfold_and_fold_put_each_patch_at_its_grid_cell():
    x = torch.arange(2 * 8**3, dtype=torch.float).reshape(2, 1, 8, 8, 8)
    patches = unfold_patches(x, 4)  # (2 * 8, 1, 4, 4, 4)
    assert torch.equal(patches[5, 0], x[0, 0, 4:8, 0:4, 4:8])  # patch (1, 0, 1) of sample 0
    means = fold_grid(patches.mean(dim=(2, 3, 4), keepdim=True), 2, 2)  # (2, 1, 2, 2, 2)
    assert torch.allclose(means[1, 0, 0, 1, 1], x[1, 0, 0:4, 4:8, 4:8].mean())


def test_a_patch_code_depends_on_its_own_patch_only():
    m = _pvq()
    sdf = torch.randn(1, 1, 16, 16, 16, requires_grad=True)
    z = m.encode_continuous(sdf)  # (1, dim, 4, 4, 4)
    z[0, :, 1, 2, 3].sum().backward()
    grad = sdf.grad[0, 0].abs()
    outside = torch.ones_like(grad, dtype=torch.bool)
    outside[4:8, 8:12, 12:16] = False
    assert grad[~outside].sum() > 0
    assert torch.all(grad[outside] == 0)  # zero everywhere outside patch (1, 2, 3)


def test_editing_one_patch_changes_only_that_patch_code():
    m = _pvq()
    sdf = torch.randn(1, 1, 16, 16, 16)
    edited = sdf.clone()
    edited[0, 0, 0:4, 0:4, 0:4] = 5.0
    a, b = m.encode_continuous(sdf), m.encode_continuous(edited)
    diff = (a - b).abs().sum(dim=1)[0]  # (4, 4, 4)
    assert diff[0, 0, 0] > 0
    diff[0, 0, 0] = 0
    assert torch.all(diff == 0)


def test_decoder_mixes_neighbouring_codes():
    m = _pvq()
    zq = torch.randn(1, 4, 4, 4, 4, requires_grad=True)
    out = m.decoder(zq)  # (1, 1, 16, 16, 16)
    out[0, 0, 5, 5, 5].backward()  # a voxel of cell (1, 1, 1)
    per_cell = zq.grad.abs().sum(dim=1)[0]
    assert per_cell[1, 1, 1] > 0 and per_cell[0, 1, 1] > 0  # the neighbour contributes too


def test_indices_round_trip_and_decode_matches_forward():
    m = _pvq()
    sdf = torch.randn(2, 1, 16, 16, 16)
    y, q = m(sdf)
    idx = m.encode(sdf)
    assert idx.shape == (2, 4, 4, 4) and torch.equal(idx, q.indices)
    assert torch.allclose(m.decode(idx), y, atol=1e-6)


def test_random_order_mask_is_lower_triangular_under_its_permutation():
    g = torch.Generator().manual_seed(1)
    order = random_order(27, g)
    assert torch.equal(order.sort().values, torch.arange(27))
    mask = random_order_mask(order)
    assert torch.equal(mask[order][:, order], torch.ones(27, 27, dtype=torch.bool).tril())
    # the first location sees only itself, the last one sees everything
    assert mask[order[0]].sum() == 1 and mask[order[-1]].all()
    # a different order gives a different mask: the mask is not the raster causal mask
    assert not torch.equal(mask, torch.ones(27, 27, dtype=torch.bool).tril())


def test_prior_step_i_ignores_tokens_at_later_ranks():
    torch.manual_seed(2)
    n, k = 27, 10
    prior = RandomOrderPrior(k, n)
    order = random_order(n, torch.Generator().manual_seed(3))
    tokens = torch.randint(0, k, (1, n), generator=torch.Generator().manual_seed(4))
    base = prior(tokens, order)
    i = 9
    changed = tokens.clone()
    changed[0, order[i:]] = (changed[0, order[i:]] + 1) % k  # rewrite ranks i .. N-1
    out = prior(changed, order)
    assert torch.allclose(out[:, : i + 1], base[:, : i + 1], atol=1e-6)  # steps <= i unaffected
    assert not torch.allclose(out[:, i + 1 :], base[:, i + 1 :])


def test_prior_knows_which_location_it_predicts():
    torch.manual_seed(5)
    prior = RandomOrderPrior(8, 8)
    tokens = torch.randint(0, 8, (1, 8), generator=torch.Generator().manual_seed(6))
    o1 = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    o2 = torch.tensor([0, 5, 2, 3, 4, 1, 6, 7])  # same first location, different second target
    l1, l2 = prior(tokens, o1), prior(tokens, o2)
    assert torch.allclose(l1[:, 0], l2[:, 0], atol=1e-6)
    assert not torch.allclose(l1[:, 1], l2[:, 1])
