"""Each mechanism at its paper's own sizes: one training step and one sampling step on the CPU.

The mechanism's defining sizes (codebook size, token grid, residual depth, number of steps,
number of states) are the paper's; the network around it stays small (width 32-64, one or two
layers), so the figures show what the mechanism itself costs at scale, e.g. that VQ-Diffusion's
posterior over 2,887 states at T = 100 needs no (T + 1, S, S) matrices. Every size comes from the
note named in SOURCE, which records where the paper or its official code states it; sizes the
notes do not state are not used (see LEFT_OUT). Sizes marked "ours" are inputs the mechanism does
not define (batch, text length, clip length) and are kept small.

Each paper runs in its own subprocess, so "peak MB" is that process's peak resident memory above
its resident memory after importing torch and building nothing (the anchor, printed too).
Run: .venv/bin/python benchmarks/paper_scale.py [name ...]     (about a minute)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]

# paper -> (sizes, source of the sizes)
SOURCE = {
    "VQ-Diffusion": (
        "K = 2887 code states + [MASK], T = 100 steps, 32 x 32 tokens",
        "papers/gu2022vector.md, Method: the authors' released text-to-image configuration",
    ),
    "RQ-VAE": (
        "8 x 8 x 4 code stack, one shared codebook of 16,384 codes of dim 256",
        "papers/lee2022autoregressive.md, Method: the released configurations",
    ),
    "MaskGIT": (
        "16 x 16 tokens, K = 1024, T = 8 iterations",
        "papers/chang2022maskgit.md, Method: 256 x 256 images, about 8 iterations",
    ),
    "DDPM": (
        "T = 1000, beta linear from 1e-4 to 0.02 (data 8 x 3 x 32 x 32 and MLP: ours)",
        "papers/ho2020denoising.md, Method: the released configuration",
    ),
    "VQGAN": ("16 x 16 tokens, K = 16,384 (code dim 256: ours)", "papers/esser2021taming.md, Method"),
    "Parti": (
        "32 x 32 = 1024 image tokens, K = 8192, 128 text tokens, text vocabulary 16,000 (guidance scale: ours)",
        "papers/yu2022scaling.md, numbers: Sec. 2.2 and 2.3",
    ),
}
LEFT_OUT = {
    "Muse": "its codebook size, token grid, steps and text width are not confirmed from the paper",
    "DALL-E": "the prior's text length and BPE vocabulary are not confirmed (only the dVAE's 8192 codes are)",
    "AudioLM": "the acoustic levels Q = 12 and Q' = 4 are not confirmed from the paper (the note uses symbols)",
    "D3PM": "its note gives T = 1000 from the released configs but not the number of states of a benchmark",
    "Multinomial diffusion": "its note gives the released step counts but not the number of classes",
    "ImageBART": "the note gives K = 16,384, 16 x 16 tokens and four stages but not the stage rates",
}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- the papers
# each returns (train_step, sample_step), two closures over the built mechanism


def vq_diffusion():
    from reference_impls import discrete_diffusion as dd
    from reference_impls.attention import TransformerBlock

    K, T, N = 2887, 100, 32 * 32
    s = dd.mask_and_replace_schedule(*dd.vq_diffusion_cumulative(T), K)

    class Denoiser(nn.Module):  # x_t (B, N) -> x_0 logits (B, N, K); small
        def __init__(self, dim=32):
            super().__init__()
            self.tok, self.pos = nn.Embedding(K + 1, dim), nn.Parameter(torch.zeros(N, dim))
            self.block, self.head = TransformerBlock(dim, 4), nn.Linear(dim, K)

        def forward(self, x, t):
            return self.head(self.block(self.tok(x) + self.pos))

    net = Denoiser()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (1, N), generator=g)

    def train():
        opt.zero_grad()
        dd.hybrid_loss(s, net, x0, generator=g)[0].backward()
        opt.step()

    @torch.no_grad()
    def sample():  # one reverse step at t = T: network, closed-form posterior, draw
        x = dd.sample_categorical(s.prior().expand(1, N, K + 1), g)
        t = torch.full((1,), T)
        p = dd.pad_to_states(net(x, t).double().softmax(-1), K + 1)
        dd.sample_categorical(dd.p_reverse_probs(s, p, x, t), g)

    return train, sample


def rq_vae():
    from reference_impls import ar_prior
    from reference_impls.residual_vq import ResidualVQ, stack_to_sequence

    K, C, D = 16384, 256, 4
    rvq = ResidualVQ(K, C, D, shared_codebook=True, generator=torch.Generator().manual_seed(0))
    prior = ar_prior.TokenPrior(K, 32, 1, 4, max_len=8 * 8 * D)  # RQ-Transformer's order, one causal stack here
    opt = torch.optim.Adam(list(rvq.parameters()) + list(prior.parameters()), 1e-3)
    z = torch.randn(1, C, 8, 8)

    def train():
        opt.zero_grad()
        out = rvq(z)  # (1, 256, 8, 8) -> 8 x 8 x 4 codes
        (out.loss + ar_prior.next_token_loss(prior, stack_to_sequence(out.indices))).backward()
        opt.step()

    def sample():  # one code of the stack, then the decoder's input from the full stack
        with torch.no_grad():
            ar_prior.sample(prior, torch.zeros(1, 1, dtype=torch.long), 1, generator=torch.Generator().manual_seed(0))
            rvq.lookup(torch.randint(0, K, (1, 8, 8, D)))

    return train, sample


def maskgit():
    from reference_impls import maskgit as mg

    K, N = 1024, 16 * 16  # T = 8 iterations in the paper; one is timed
    net = mg.MaskedTransformer(K, N, dim=64, depth=2)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, K, (1, N), generator=g)

    def train():
        opt.zero_grad()
        mask = mg.training_mask(1, N, g)
        mg.masked_token_loss(net(mg.apply_mask(tokens, mask, K)), tokens, mask).backward()
        opt.step()

    def sample():  # one of the T = 8 iterations
        with torch.no_grad():
            mg.decode(lambda x, t: net(x), torch.full((1, N), K), torch.ones(1, N, dtype=torch.bool), K, 1, g)

    return train, sample


def ddpm():
    from reference_impls import ddpm as dp

    s = dp.Schedule(dp.linear_betas(1000, 1e-4, 0.02))
    net = nn.Sequential(nn.Linear(3 * 32 * 32 + 1, 256), nn.SiLU(), nn.Linear(256, 3 * 32 * 32))  # 3x32x32: ours

    def eps(x, t):
        return net(torch.cat([x.flatten(1), t[:, None] / 1000.0], 1)).view_as(x)

    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 3, 32, 32, generator=g)

    def train():
        opt.zero_grad()
        dp.eps_loss(s, eps, x0, g).backward()
        opt.step()

    def sample():  # one reverse step (Alg. 2) at t = T
        with torch.no_grad():
            x, t = torch.randn(8, 3, 32, 32, generator=g), torch.full((8,), 999)
            dp.p_mean(s, x, t, eps(x, t)) + s.betas[999].sqrt() * torch.randn(8, 3, 32, 32, generator=g)

    return train, sample


def vqgan():
    from reference_impls import ar_prior
    from reference_impls.vq import VectorQuantizer

    K, D = 16384, 256  # code dim 256: ours
    vq = VectorQuantizer(K, D, generator=torch.Generator().manual_seed(0))
    prior = ar_prior.TokenPrior(K, 32, 1, 4, max_len=16 * 16)
    opt = torch.optim.Adam(list(vq.parameters()) + list(prior.parameters()), 1e-3)
    z = torch.randn(1, D, 16, 16, requires_grad=True)

    def train():
        opt.zero_grad()
        out = vq(z)
        (out.loss + out.z_q.square().mean() + ar_prior.next_token_loss(prior, out.indices.flatten(1))).backward()
        opt.step()

    def sample():  # one token after 255, with the cache
        with torch.no_grad():
            seq = torch.randint(0, K, (1, 256))
            _, cache = prior.forward_incremental(seq[:, :-1])
            prior.forward_incremental(seq[:, -1:], cache)

    return train, sample


def parti():
    from reference_impls import ar_prior
    from reference_impls.guidance import guide_s
    from reference_impls.seq2seq_prior import Seq2SeqPrior

    K, N, M, V = 8192, 32 * 32, 128, 16000  # image codes, image tokens, text tokens, text vocabulary
    net = Seq2SeqPrior(V, K, max_text=M, max_image=N, dim=32, n_heads=4, enc_layers=1, dec_layers=1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    text, image = torch.randint(1, V, (1, M), generator=g), torch.randint(0, K, (1, N), generator=g)

    def train():  # teacher forcing over all 1024 image tokens
        opt.zero_grad()
        net.loss(text, image).backward()
        opt.step()

    with torch.no_grad():  # the encoder runs once per sample, before the decoding steps
        memory, null_memory = net.encode(text), net.encode(net.null_text(text))  # (1, 128, D) each

    def sample():  # the last token (after 1023), guided: both decoder passes over the whole prefix (no cache)
        with torch.no_grad():
            prefix = image[:, :-1]
            cond, uncond = net.decode(prefix, memory)[:, -1], net.decode(prefix, null_memory)[:, -1]  # (1, K)
            ar_prior.sample_from_logits(guide_s(cond, uncond, 3.0), g)

    return train, sample


PAPERS = {
    "VQ-Diffusion": vq_diffusion,
    "RQ-VAE": rq_vae,
    "MaskGIT": maskgit,
    "DDPM": ddpm,
    "VQGAN": vqgan,
    "Parti": parti,
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(name: str) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = _rss_mb()
    train, sample = PAPERS[name]()
    train()  # warm-up: first calls allocate
    sample()
    t_train, t_sample = _seconds(train), _seconds(sample)
    return {"train_s": t_train, "sample_s": t_sample, "peak_mb": _rss_mb() - base, "base_mb": base}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(run_one(argv[1])))
        return 0
    names = argv or list(PAPERS)
    unknown = [n for n in names if n not in PAPERS]
    if unknown:
        print(
            f"benchmarks/paper_scale.py: unknown paper(s) {', '.join(unknown)}; expected some of {', '.join(PAPERS)}",
            file=sys.stderr,
        )
        return 1
    print(
        "one training step and one sampling step per paper, at the paper's sizes; CPU, one thread, batch 1 unless noted"
    )
    print(f"{'paper':14s} {'train s':>8s} {'sample s':>9s} {'peak MB':>8s}  sizes (source)")
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"{name:14s} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout)
        sizes, source = SOURCE[name]
        print(f"{name:14s} {r['train_s']:8.3f} {r['sample_s']:9.4f} {r['peak_mb']:8.0f}  {sizes} ({source})")
    print(f"peak MB is above the process's resident memory after importing torch (~{r['base_mb']:.0f} MB)")
    print("left out (sizes not stated in the notes): " + "; ".join(f"{k}: {v}" for k, v in LEFT_OUT.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
