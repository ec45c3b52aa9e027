import torch

from reference_impls.ar_prior import sample_from_logits
from reference_impls.cogview2 import (
    cluster_codebook,
    cluster_probs,
    cluster_sample,
    lopar_attention_mask,
    lopar_refine,
    lopar_schedule,
)


def test_cluster_probability_is_the_sum_of_its_members():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 12, generator=g).softmax(-1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 3, 0, 1, 2])
    cp = cluster_probs(probs, labels, 4)
    for c in range(4):
        torch.testing.assert_close(cp[:, c], probs[:, labels == c].sum(-1))
    torch.testing.assert_close(cp.sum(-1), torch.ones(3))


def test_codebook_clusters_group_nearby_code_vectors():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    codebook = torch.cat([c + 0.1 * torch.randn(8, 2, generator=g) for c in centres])  # (24, 2)
    labels = cluster_codebook(codebook, 3, generator=torch.Generator().manual_seed(1))
    for i in range(3):
        assert labels[i * 8 : (i + 1) * 8].unique().numel() == 1
    assert labels.unique().numel() == 3


def test_drawn_token_always_lies_in_its_drawn_cluster_and_cluster_is_in_top_k():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (60,), generator=g)
    logits = torch.randn(256, 60, generator=g) * 2
    cp = cluster_probs(logits.double().softmax(-1), labels, 10)
    top = cp.topk(3, dim=-1).indices  # (256, 3)
    tokens, clusters = cluster_sample(logits, labels, 10, top_k=3, generator=g)
    assert torch.equal(labels[tokens], clusters)
    assert (top == clusters[:, None]).any(dim=1).all()


def test_cluster_sampling_with_all_clusters_matches_the_token_distribution():
    # with top_k = number of clusters, the two-stage draw is an exact factorisation p(v) = P(c) p(v | c)
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    logits = torch.tensor([[0.5, -1.0, 1.0, 0.0, 0.2, 1.5]]).expand(30000, 6)
    tokens, _ = cluster_sample(logits, labels, 3, top_k=3, generator=g)
    freq = torch.bincount(tokens, minlength=6).double() / 30000
    torch.testing.assert_close(freq, logits[0].double().softmax(-1), atol=0.012, rtol=0)


def test_lopar_number_of_steps_does_not_grow_with_image_size():
    block = (3, 3)
    g = torch.Generator().manual_seed(0)

    def draw(logits):
        return sample_from_logits(logits, g)

    calls = []
    for side in (6, 12, 24):

        def predict(t):
            return torch.zeros(*t.shape, 5)

        _, n = lopar_refine(predict, torch.zeros(1, side, side, dtype=torch.long), block, draw, warmup=2)
        calls.append(n)
    assert calls == [2 + 3 + 3 - 1] * 3


def test_lopar_fixes_every_position_exactly_once_on_window_anti_diagonals():
    s = lopar_schedule(6, 8, (3, 4))
    assert s.shape == (6, 8)
    assert s[0, 0] == 0 and s[2, 3] == 5 and s[3, 4] == 0 and s[5, 7] == 5
    # the model sees the tokens fixed before each step: record which positions change at each call
    history = []

    def predict(tokens):
        history.append(tokens.clone())
        return torch.zeros(*tokens.shape, 2)

    def draw(logits):
        return torch.ones(logits.shape[0], dtype=torch.long)

    out, _ = lopar_refine(predict, torch.zeros(1, 6, 8, dtype=torch.long), (3, 4), draw)
    assert (out == 1).all()
    for step, seen in enumerate(history):
        torch.testing.assert_close(seen[0] == 1, s < step)  # exactly the earlier steps are fixed


def test_lopar_mask_lets_a_token_see_only_earlier_steps_of_its_own_window():
    h, w, block = 4, 6, (2, 3)
    m = lopar_attention_mask(h, w, block)
    s = lopar_schedule(h, w, block).flatten()
    for p in range(h * w):
        for q in range(h * w):
            (pr, pc), (qr, qc) = divmod(p, w), divmod(q, w)
            same = (pr // 2, pc // 3) == (qr // 2, qc // 3)
            assert bool(m[p, q]) == (p == q or (same and s[q] < s[p]))
