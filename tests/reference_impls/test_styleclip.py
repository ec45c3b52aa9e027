import math

import torch

from reference_impls.clip import CLIP
from reference_impls.styleclip import ToyGenerator, clip_distance, lr_schedule, objective, optimise_latent

L, W, C, H, V = 2, 8, 1, 4, 7


def setup(seed: int = 0):
    torch.manual_seed(seed)
    gen = ToyGenerator(L, W, C, H)
    clip = CLIP(image_in_dim=C * H * H, vocab_size=V, width=16, embed_dim=8).requires_grad_(False)
    text_emb = clip.encode_text(torch.tensor([[1, 2, 3]]))[0]  # (E,)
    source = torch.randn(1, L, W)
    return gen, clip.encode_image, text_emb, source


def test_objective_is_clip_distance_plus_lambda_times_squared_latent_distance():
    gen, enc, text_emb, source = setup()
    w = source + 0.3
    img_emb = enc(gen(w))[0]
    cos = (img_emb @ text_emb / (img_emb.norm() * text_emb.norm())).item()
    expected = (1 - cos) + 0.5 * (0.3**2) * L * W
    assert abs(objective(w, source, gen, enc, text_emb, 0.5).item() - expected) < 1e-5
    assert torch.allclose(clip_distance(img_emb[None], text_emb), torch.tensor([1 - cos]), atol=1e-6)


def test_optimisation_lowers_the_objective_and_the_clip_distance():
    gen, enc, text_emb, source = setup()
    w, history = optimise_latent(source, gen, enc, text_emb, lam_l2=0.008, steps=60)
    assert history[-1] < history[0] - 0.1
    assert clip_distance(enc(gen(w)), text_emb) < clip_distance(enc(gen(source)), text_emb) - 0.1


def test_very_large_lambda_keeps_the_latent_at_the_source():
    gen, enc, text_emb, source = setup()
    free, _ = optimise_latent(source, gen, enc, text_emb, lam_l2=0.0, steps=60)
    held, _ = optimise_latent(source, gen, enc, text_emb, lam_l2=1e4, steps=60)
    assert (free - source).norm() > 0.5
    assert (held - source).norm() < 1e-2


def test_larger_lambda_gives_a_smaller_edit():
    gen, enc, text_emb, source = setup()
    dists = [
        (optimise_latent(source, gen, enc, text_emb, lam, steps=60)[0] - source).norm().item()
        for lam in (0.0, 0.05, 1.0)
    ]
    assert dists[0] > dists[1] > dists[2]


def test_only_the_latent_moves_the_generator_stays_frozen():
    gen, enc, text_emb, source = setup()
    before = [p.clone() for p in gen.parameters()]
    optimise_latent(source, gen, enc, text_emb, lam_l2=0.0, steps=10)
    assert all(torch.equal(a, b) for a, b in zip(before, gen.parameters(), strict=True))


def test_learning_rate_warms_up_then_ramps_down_to_zero():
    assert lr_schedule(0.0, 0.1) == 0.0
    assert abs(lr_schedule(0.025, 0.1) - 0.05) < 1e-12  # half-way through the 5% warm-up
    assert lr_schedule(0.5, 0.1) == 0.1  # flat middle
    assert abs(lr_schedule(0.875, 0.1) - 0.1 * (0.5 - 0.5 * math.cos(0.5 * math.pi))) < 1e-12
    assert lr_schedule(0.999, 0.1) < 1e-4
