import math

import torch

from reference_impls.clip import CLIP, clip_logits, clip_loss, cosine_similarity, rerank


def test_loss_equals_cross_entropy_both_ways_on_hand_example():
    image = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised to e1, e2
    text = torch.tensor([[5.0, 0.0], [0.6, 0.8]])  # normalised to e1, (0.6, 0.8)
    scale = 2.0
    # logits = scale * [[1, 0.6], [0, 0.8]]
    logits = [[2.0, 1.2], [0.0, 1.6]]
    row = -(logits[0][0] - math.log(math.exp(logits[0][0]) + math.exp(logits[0][1]))) - (
        logits[1][1] - math.log(math.exp(logits[1][0]) + math.exp(logits[1][1]))
    )
    col = -(logits[0][0] - math.log(math.exp(logits[0][0]) + math.exp(logits[1][0]))) - (
        logits[1][1] - math.log(math.exp(logits[0][1]) + math.exp(logits[1][1]))
    )
    expected = 0.5 * (row / 2 + col / 2)
    assert torch.allclose(clip_logits(image, text, scale), torch.tensor(logits), atol=1e-6)
    assert abs(clip_loss(image, text, scale).item() - expected) < 1e-6


def test_loss_is_symmetric_in_images_and_texts():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert torch.allclose(clip_loss(a, b, 10.0), clip_loss(b, a, 10.0), atol=1e-6)


def test_aligned_pairs_give_lower_loss_than_shuffled():
    g = torch.Generator().manual_seed(1)
    text = torch.randn(8, 16, generator=g)
    image = text + 0.1 * torch.randn(8, 16, generator=g)  # each image close to its own text
    shuffled = image[torch.roll(torch.arange(8), 1)]
    assert clip_loss(image, text, 20.0) < clip_loss(shuffled, text, 20.0) - 1.0


def test_loss_is_invariant_to_embedding_norm():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    scales = torch.rand(5, 1, generator=g) + 0.5
    assert torch.allclose(clip_loss(a * scales, b, 7.0), clip_loss(a, b, 7.0), atol=1e-6)


def test_reranking_order_follows_similarity():
    text = torch.tensor([1.0, 0.0])
    angles = torch.tensor([1.0, 0.1, 2.5, 0.5])  # smaller angle -> more similar
    cands = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * torch.tensor([[3.0], [1.0], [2.0], [0.5]])
    order, scores = rerank(cands, text)
    assert order.tolist() == [1, 3, 0, 2]
    assert torch.allclose(scores, torch.cos(angles), atol=1e-6)
    assert torch.allclose(cosine_similarity(cands, text), torch.cos(angles), atol=1e-6)


def test_temperature_starts_at_one_over_0_07_and_is_clipped_at_100():
    model = CLIP(image_in_dim=4, vocab_size=5)
    assert abs(model.logit_scale.item() - 1 / 0.07) < 1e-4
    with torch.no_grad():
        model.log_temp.fill_(10.0)
    assert model.logit_scale.item() == 100.0


def test_training_aligns_matching_pairs_and_learns_the_temperature():
    torch.manual_seed(0)
    n, vocab = 8, 8
    images = torch.eye(n).view(n, 1, 2, 4) + 0.05 * torch.randn(n, 1, 2, 4)
    tokens = torch.arange(n).view(n, 1).repeat(1, 3)  # text n is the token n repeated
    model = CLIP(image_in_dim=8, vocab_size=vocab, width=32, embed_dim=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    start_temp = model.log_temp.item()
    first = model(images, tokens).item()
    for _ in range(60):
        opt.zero_grad()
        loss = model(images, tokens)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert model.log_temp.item() != start_temp
    sims = model.encode_image(images) @ model.encode_text(tokens).t()  # (N, N)
    assert torch.equal(sims.argmax(dim=1), torch.arange(n))
