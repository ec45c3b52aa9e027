import torch
import torch.nn.functional as F

from reference_impls.audiolm import (
    StageLM,
    flatten_levels,
    split_coarse_fine,
    stage_sequence,
    unflatten_levels,
)
from reference_impls.residual_vq import ResidualVQ

K_SEM, K_AC, Q, QC = 10, 6, 12, 4  # Q levels, the first QC coarse


def _tokens(t_sem=3, rate=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, K_SEM, (2, t_sem), generator=g)
    acoustic = torch.randint(0, K_AC, (2, rate * t_sem, Q), generator=g)
    return semantic, acoustic


def test_coarse_and_fine_stages_take_exactly_their_levels_of_the_residual_depth():
    semantic, acoustic = _tokens()
    s2 = stage_sequence(2, semantic, acoustic, QC, K_SEM, K_AC)
    s3 = stage_sequence(3, semantic, acoustic, QC, K_SEM, K_AC)
    coarse_ids = s2.tokens[s2.target].reshape(2, -1)
    fine_ids = s3.tokens[s3.target].reshape(2, -1)
    assert torch.equal(unflatten_levels(coarse_ids, 0, QC, K_SEM, K_AC), acoustic[..., :QC])
    assert torch.equal(unflatten_levels(fine_ids, QC, Q - QC, K_SEM, K_AC), acoustic[..., QC:])
    # per semantic token: rate * Q' coarse and rate * (Q - Q') fine tokens (rate = 2)
    assert coarse_ids.shape[1] == 3 * 2 * QC and fine_ids.shape[1] == 3 * 2 * (Q - QC)
    # level q of the depth lives in its own id range
    level_of = (fine_ids - K_SEM) // K_AC
    assert torch.equal(level_of[0, : Q - QC], torch.arange(QC, Q))


def test_flattening_is_time_major_and_level_minor():
    codes = torch.tensor([[[1, 2], [3, 4]]])  # (B=1, T=2, q=2)
    ids = flatten_levels(codes, 0, K_SEM, K_AC)
    assert ids.tolist() == [[K_SEM + 1, K_SEM + K_AC + 2, K_SEM + 3, K_SEM + K_AC + 4]]


def test_each_stage_reads_only_earlier_stages():
    semantic, acoustic = _tokens()
    sem2 = (semantic + 1) % K_SEM
    fine2 = acoustic.clone()
    fine2[..., QC:] = (fine2[..., QC:] + 1) % K_AC
    coarse2 = acoustic.clone()
    coarse2[..., :QC] = (coarse2[..., :QC] + 1) % K_AC

    def s(k, sem, ac):
        return stage_sequence(k, sem, ac, QC, K_SEM, K_AC).tokens

    # stage 1 reads no acoustic token; stage 2 no fine token; stage 3 no semantic token
    assert torch.equal(s(1, semantic, acoustic), s(1, semantic, coarse2))
    assert torch.equal(s(2, semantic, acoustic), s(2, semantic, fine2))
    assert torch.equal(s(3, semantic, acoustic), s(3, sem2, acoustic))
    # ... but each does read the stage right before it
    assert not torch.equal(s(2, semantic, acoustic), s(2, sem2, acoustic))
    assert not torch.equal(s(3, semantic, acoustic), s(3, semantic, coarse2))


def test_stage_prediction_sees_the_whole_prefix_and_only_its_own_past():
    torch.manual_seed(1)
    semantic, acoustic = _tokens()
    seq = stage_sequence(2, semantic, acoustic, QC, K_SEM, K_AC)
    lm = StageLM(K_SEM + Q * K_AC, max_len=64)
    h = lm.embed(seq.tokens).detach().requires_grad_(True)  # h[:, j] carries token j - 1
    i = semantic.shape[1] + 5  # the sixth coarse token
    lm.forward_embeddings(h)[0, i].sum().backward()
    reach = h.grad[0].abs().sum(-1)  # (L,)
    assert torch.all(reach[: i + 1] > 0)  # all semantic tokens and the coarse tokens before i
    assert torch.all(reach[i + 1 :] == 0)  # nothing from token i onwards
    assert torch.all(h.grad[1] == 0)  # nor from another example


def test_stage_loss_counts_only_the_stage_own_tokens():
    torch.manual_seed(2)
    semantic, acoustic = _tokens()
    seq = stage_sequence(3, semantic, acoustic, QC, K_SEM, K_AC)
    lm = StageLM(K_SEM + Q * K_AC, max_len=128)
    logits = lm(seq.tokens)
    n_prefix = 3 * 2 * QC
    by_hand = F.cross_entropy(logits[:, n_prefix:].reshape(-1, lm.vocab), seq.tokens[:, n_prefix:].reshape(-1))
    assert torch.allclose(lm.loss(seq), by_hand, atol=1e-6)
    assert not seq.target[:, :n_prefix].any() and seq.target[:, n_prefix:].all()


def test_coarse_tokens_are_the_first_levels_of_a_residual_quantiser():
    g = torch.Generator().manual_seed(3)
    rvq = ResidualVQ(K_AC, 4, Q, shared_codebook=False, generator=g)
    z = torch.randn(1, 4, 6, generator=g)  # (B, D, T_a)
    full = rvq(z)  # indices (1, 6, Q)
    coarse, fine = split_coarse_fine(full.indices, QC)
    assert torch.allclose(rvq.lookup(coarse), rvq(z, n_q=QC).z_q, atol=1e-6)  # coarse alone = n_q = Q'
    assert fine.shape[-1] == Q - QC
    assert torch.allclose(rvq.lookup(torch.cat([coarse, fine], -1)), full.z_q, atol=1e-5)
