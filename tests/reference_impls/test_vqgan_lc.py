import torch
import torch.nn.functional as F

from reference_impls.vq import VectorQuantizer, nearest_code
from reference_impls.vqgan_lc import FrozenTableVQ, code_usage, init_code_table


def _sgd_step(module, lr):
    """One plain gradient step (torch.optim's first step costs seconds of lazy imports)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def _clusters(n_clusters, per, dim, seed, spread=0.05):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(n_clusters, dim, generator=g)
    x = centres.repeat_interleave(per, 0) + spread * torch.randn(n_clusters * per, dim, generator=g)
    return x, torch.arange(n_clusters).repeat_interleave(per)


def _quantizer(k=32, table_dim=12, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return FrozenTableVQ(table=torch.randn(k, table_dim, generator=g), dim=dim, generator=g)


def test_every_table_row_is_the_centroid_of_the_features_nearest_to_it():
    features, _ = _clusters(8, 50, 5, seed=1)
    table = init_code_table(features, 8, generator=torch.Generator().manual_seed(0))
    labels = nearest_code(features, table)
    for k in range(8):
        assert torch.allclose(table[k], features[labels == k].mean(0), atol=1e-5)


def test_per_class_tables_hold_k_centroids_of_each_class_in_class_order():
    # the official codebook: k-means per ImageNet class, k centres each, concatenated
    features, labels = _clusters(3, 60, 4, seed=2, spread=1.0)
    table = init_code_table(features, 5, labels=labels, generator=torch.Generator().manual_seed(0))
    assert table.shape == (15, 4)
    for c in range(3):
        own = features[labels == c]
        rows = table[5 * c : 5 * c + 5]
        assign = nearest_code(own, rows)
        for j in range(5):
            assert torch.allclose(rows[j], own[assign == j].mean(0), atol=1e-5)


def test_only_the_projector_receives_gradient_and_the_table_stays_fixed():
    q = _quantizer()
    assert "table" in dict(q.named_buffers()) and "table" not in dict(q.named_parameters())
    assert {n for n, _ in q.named_parameters()} == {"projector.weight", "projector.bias"}
    table0 = q.table.clone()
    z = torch.randn(2, 6, 5, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = q(z)
    (out.loss + (out.z_q * torch.randn_like(out.z_q)).sum()).backward()
    assert q.table.grad is None and not q.table.requires_grad
    assert q.projector.weight.grad.abs().sum() > 0 and q.projector.bias.grad.abs().sum() > 0
    _sgd_step(q, 0.5)
    assert torch.equal(q.table, table0)


def test_a_projector_step_moves_every_code_where_plain_vq_moves_only_the_chosen_ones():
    q = _quantizer(k=32)
    z = torch.randn(1, 6, 2, 2, generator=torch.Generator().manual_seed(4))  # 4 rows: at most 4 codes chosen
    before = q.codes().detach().clone()
    out = q(z)
    out.loss.backward()
    _sgd_step(q, 0.1)
    moved = (q.codes().detach() - before).norm(dim=1)  # (K,)
    unused = torch.ones(32, dtype=torch.bool)
    unused[out.indices.unique()] = False
    assert unused.sum() >= 28 and (moved[unused] > 1e-4).all()
    # plain VQ with the same codes as its own trained table: the unchosen rows get exactly zero gradient
    vq = VectorQuantizer(32, 6)
    with torch.no_grad():
        vq.codebook.copy_(before)
    vq(z).loss.backward()
    assert torch.equal(vq.codebook.grad[unused], torch.zeros(int(unused.sum()), 6))


def test_lookup_is_plain_vq_on_the_projected_table():
    q = _quantizer()
    z = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(5))
    out = q(z)
    rows = z.movedim(1, -1).reshape(-1, 6)
    codes = q.projector(q.table).detach()
    assert torch.equal(out.indices.reshape(-1), torch.cdist(rows, codes).argmin(1))
    assert torch.allclose(out.z_q, q.lookup(out.indices), atol=1e-6)


def test_official_loss_weights_one_on_commitment_and_a_third_on_the_codebook_term():
    # models_vq.py: mean((sg[z_q] - z)^2) + 0.33 mean((z_q - sg[z])^2): the encoder's gradient is the
    # straight-through copy plus 2 (z - z_q) / (N d) with weight 1, the projector's only 0.33 of the codebook term
    q = _quantizer()
    z = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    out = q(z)
    out.loss.backward()
    zq = q.lookup(out.indices).detach()
    assert torch.allclose(z.grad, 2 * (z - zq).detach() / z.numel(), atol=1e-6)
    q.zero_grad()
    rows = z.detach().movedim(1, -1).reshape(-1, 6)
    (0.33 * F.mse_loss(F.embedding(out.indices.reshape(-1), q.codes()), rows)).backward()
    g_codebook_only = q.projector.weight.grad.clone()
    q.zero_grad()
    q(z.detach()).loss.backward()
    assert torch.allclose(q.projector.weight.grad, g_codebook_only, atol=1e-6)


def _train(q, z, steps=100, lr=3e-2, betas=(0.5, 0.9), eps=1e-8):
    """Adam with the official betas (training_vqgan.py), written out: no lazy torch.optim import."""
    params = list(q.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        q.zero_grad()
        q(z).loss.backward()
        with torch.no_grad():
            for p, m_p, v_p in zip(params, m, v, strict=True):
                m_p.mul_(betas[0]).add_(p.grad, alpha=1 - betas[0])
                v_p.mul_(betas[1]).addcmul_(p.grad, p.grad, value=1 - betas[1])
                m_hat, v_hat = m_p / (1 - betas[0] ** t), v_p / (1 - betas[1] ** t)
                p -= lr * m_hat / (v_hat.sqrt() + eps)
    with torch.no_grad():
        return float(code_usage(q(z).indices, 64))


def test_usage_of_a_kmeans_table_reaches_nearly_all_codes_where_plain_vq_leaves_most_dead():
    # Stand-in set-up: features x (N, 16) of a continuous distribution; the table is their k-means centres
    # (K = 64); a frozen random linear encoder maps x to z (d = 8). Only the quantiser trains, on L_q.
    # The projector carries the whole clustered table onto the encoder's distribution: usage -> ~100 %.
    # Plain VQ with N(0, 1) codes at the same K, learning rate and steps keeps most codes dead.
    lc, plain = [], []
    for seed in range(3):
        x, _ = _clusters(1, 2048, 16, seed=seed, spread=1.0)
        g = torch.Generator().manual_seed(100 + seed)
        table = init_code_table(x, 64, generator=g)
        encoder = torch.randn(16, 8, generator=g) / 4  # frozen stand-in encoder
        z = (x @ encoder).t().unsqueeze(0)  # (1, d, N)
        lc.append(_train(FrozenTableVQ(table=table, dim=8, generator=g), z))
        plain.append(_train(VectorQuantizer(64, 8, generator=torch.Generator().manual_seed(seed)), z))
    assert min(lc) >= 0.95, lc
    assert max(plain) <= 0.3, plain  # seeds 0-2: about 98-100 % against 3-19 %
