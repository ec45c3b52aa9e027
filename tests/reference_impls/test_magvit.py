import math

import torch

from reference_impls.magvit import (
    TASKS,
    VQ3D,
    commit_decode,
    commit_inputs,
    commit_mask,
    condition_region,
    pad_condition,
)
from reference_impls.maskgit import MaskedTransformer

K, GRID = 32, (4, 4, 4)
MASK = K


def tokens(seed):
    return torch.randint(0, K, (3, *GRID), generator=torch.Generator().manual_seed(seed))


def test_condition_regions_per_task_match_hand_layouts():
    fp = condition_region("frame_prediction", GRID)
    assert fp[0].all() and not fp[1:].any()
    fi = condition_region("frame_interpolation", GRID)
    assert fi[0].all() and fi[-1].all() and not fi[1:-1].any()
    op = condition_region("outpainting", GRID)
    assert op[:, 1:3, 1:3].all() and op.sum() == 4 * 4  # the 2 x 2 centre of each of 4 frames
    ip = condition_region("inpainting", GRID)
    assert torch.equal(ip, ~op)
    assert not condition_region("class_conditional", GRID).any()


def test_fully_masked_input_shows_condition_tokens_in_the_region_and_mask_elsewhere_per_task():
    target, cond = tokens(0), tokens(1)
    for task in TASKS:
        region = condition_region(task, GRID)
        out = commit_mask(target, cond, region, MASK, ratio=torch.zeros(3))  # gamma(0) = 1: all masked
        inp = out["inputs"]
        assert out["masked"].all()
        assert torch.equal(inp[:, region], cond[:, region]), task
        assert torch.all(inp[:, ~region] == MASK), task


def test_condition_region_never_shows_mask_at_any_ratio_and_visible_tokens_are_targets():
    target, cond = tokens(2), tokens(3)
    g = torch.Generator().manual_seed(0)
    for task in TASKS:
        region = condition_region(task, GRID)
        for _ in range(5):
            out = commit_mask(target, cond, region, MASK, generator=g)
            inp, masked = out["inputs"], out["masked"]
            reg = region.expand_as(target)
            assert not torch.any(inp[reg] == MASK)
            assert torch.equal(inp[~masked], target[~masked])
            assert torch.equal(inp[masked & reg], cond[masked & reg])
            assert torch.all(inp[masked & ~reg] == MASK)


def test_three_objectives_partition_the_positions():
    target, cond = tokens(4), tokens(5)
    out = commit_mask(
        target, cond, condition_region("frame_interpolation", GRID), MASK, generator=torch.Generator().manual_seed(1)
    )
    total = out["refine"].int() + out["predict"].int() + out["reconstruct"].int()
    assert torch.all(total == 1)


def test_masked_count_follows_the_cosine_schedule():
    target, cond = tokens(6), tokens(7)
    out = commit_mask(target, cond, condition_region("outpainting", GRID), MASK, ratio=torch.tensor([0.0, 0.5, 0.9]))
    n = target[0].numel()
    assert out["masked"].flatten(1).sum(1).tolist() == [
        n,
        math.ceil(math.cos(math.pi / 4) * n),
        math.ceil(math.cos(0.45 * math.pi) * n),
    ]


def test_commit_decoding_first_pass_sees_condition_tokens_and_ends_complete():
    torch.manual_seed(0)
    model = MaskedTransformer(K, 64, dim=32, depth=1).eval()
    cond = tokens(8)
    region = condition_region("frame_prediction", GRID)
    seen = []

    def fn(x, t):
        seen.append(x.clone())
        return model(x)

    out = commit_decode(fn, cond, region, MASK, steps=6, generator=torch.Generator().manual_seed(0))
    first = seen[0].view_as(cond)
    assert torch.equal(first, commit_inputs(cond, cond, region, torch.ones_like(cond, dtype=torch.bool), MASK))
    assert len(seen) == 6 and out.max() < K


def test_padding_keeps_only_condition_pixels_and_3d_tokens_are_local_in_time():
    torch.manual_seed(0)
    vq = VQ3D(channels=3, dim=8, num_codes=K, stride=(2, 4, 4), generator=torch.Generator().manual_seed(0))
    video = torch.randn(1, 3, 8, 16, 16)
    region = condition_region("frame_prediction", GRID)
    padded = pad_condition(video, region)
    assert torch.equal(padded[:, :, :2], video[:, :, :2]) and torch.all(padded[:, :, 2:] == 0)
    # condition tokens of the given latent frame do not depend on the padded frames
    other = padded.clone()
    other[:, :, 2:] = torch.randn(1, 3, 6, 16, 16)
    assert torch.equal(vq.tokenize(padded)[:, 0], vq.tokenize(other)[:, 0])
    # but one latent frame covers two video frames jointly (3-D, not per frame)
    moved = padded.clone()
    moved[:, :, 1] += 3.0
    assert not torch.allclose(vq.enc(moved)[:, :, 0], vq.enc(padded)[:, :, 0])
    assert torch.equal(vq.enc(moved)[:, :, 1:], vq.enc(padded)[:, :, 1:])
