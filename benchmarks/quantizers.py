"""Which quantizer? Seven quantisers trained in one toy autoencoder at equal bits per token.

One seeded toy problem, one architecture, the same optimiser and steps for every quantiser; only
the bottleneck changes. Anchor: plain VQ (reference_impls.vq.VectorQuantizer, no EMA) at the same
bits, measured in the same run; every ratio is against it.

    data      x = tanh(A h) in R^32, h = c_j + 0.3 n, c_j one of 2048 cluster centres in R^8
              (A, the centres and every draw seeded); training batches are fresh draws, the
              evaluation set is 16,384 held-out draws
    model     MLP encoder 32 -> 128 -> 128 -> 16, quantiser on the 16-d latent (one token per
              sample), MLP decoder 16 -> 128 -> 128 -> 32; loss = MSE(x_hat, x) + the quantiser's loss
    train     Adam, lr 1e-3, batch 256, the same number of steps (default 400) for every quantiser
    bits      10: VQ codebooks of 1024, FSQ levels [8,5,5,5] (1000 codes, 9.97 bits), LFQ/BSQ 10 bits
              14: VQ codebooks of 16384, FSQ levels [8,8,8,6,5] (15360 codes, 13.91 bits), LFQ/BSQ 14 bits

    vq        reference_impls.vq.VectorQuantizer(K, 16), beta 0.25, codebook learnt by its loss
    vq-ema    the same with ema=True, decay 0.99
    vq-rot    reference_impls.rotation_trick.RotationTrickVQ(K, 16): plain VQ, rotation-trick gradient
    dac-l2    reference_impls.dac.DACQuantizer(K, 16, depth=1, code_dim=8): one factorised level,
              cosine lookup among l2-normalised 8-d codes (DAC / ViT-VQGAN codes), no dropout
    fsq       reference_impls.fsq.FSQ(levels, dim=16): no auxiliary loss
    lfq       reference_impls.lfq.LFQ(bits, dim=16): entropy weight 0.1, gamma 1, tau 0.01, codebook
              entropy summed over two groups of bits/2 channels (the exact 2^14-way entropy costs
              about 20 times more per step than the rest of the step)
    bsq       reference_impls.bsq.BSQ(bits, 16): the same entropy settings, codes on the sphere

Figures (each case runs in its own subprocess, one torch thread):
    recon     mean squared reconstruction error on the held-out set (eval mode)
    usage     share of the codebook the held-out set uses (16,384 points, so at most 100% at 14 bits)
    ppl       perplexity of the held-out code histogram, exp(entropy)
    ms/step   median CPU time (time.process_time, one thread) of a training step (forward,
              backward, Adam) after 20 warm-up steps; CPU time rather than wall time, so that
              other processes on a shared machine do not inflate it
    peak MB   growth of the process's peak resident set size (getrusage ru_maxrss) from just before
              training to its end: the extra memory training needed at its high-water mark

Run:  .venv/bin/python benchmarks/quantizers.py              (about two minutes on one core)
      .venv/bin/python benchmarks/quantizers.py --steps 200  (quicker, noisier)
Every codebook (vq, vq-ema, vq-rot, dac-l2) starts from encoder outputs of 4096 fresh draws, each
code a randomly chosen one plus 1% noise: with the modules' N(0, 1) initial codes, far from the
small initial encoder outputs, all four collapse to one code in this toy. No k-means, no dead-code
restarts, no learning-rate schedule: the table compares the mechanisms, not tuned recipes.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUANTIZERS = ("vq", "vq-ema", "vq-rot", "dac-l2", "fsq", "lfq", "bsq")
BITS = {10: {"K": 1024, "levels": [8, 5, 5, 5]}, 14: {"K": 16384, "levels": [8, 8, 8, 6, 5]}}
IN_DIM, LATENT, HIDDEN, BATCH, N_EVAL, SEED = 32, 16, 128, 256, 16384, 0


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB -> MiB


def _data(torch, seed: int):
    """A seeded sampler of the toy data: draw(n, generator) -> (n, 32)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(IN_DIM, 8, generator=g) / 8**0.5
    centres = torch.randn(2048, 8, generator=g)

    def draw(n: int, gen):
        j = torch.randint(0, 2048, (n,), generator=gen)
        h = centres[j] + 0.3 * torch.randn(n, 8, generator=gen)
        return torch.tanh(h @ a.t())

    return draw


def _quantizer(name: str, bits: int):
    """(module, number of codes, step function z -> (z_q, indices, aux_loss))."""
    import torch

    sys.path.insert(0, str(ROOT))
    from reference_impls.bsq import BSQ
    from reference_impls.dac import DACQuantizer
    from reference_impls.fsq import FSQ
    from reference_impls.lfq import LFQ
    from reference_impls.rotation_trick import RotationTrickVQ
    from reference_impls.vq import VectorQuantizer

    k = BITS[bits]["K"]
    g = torch.Generator().manual_seed(SEED + 1)
    if name in ("vq", "vq-ema"):
        q = VectorQuantizer(k, LATENT, ema=name == "vq-ema", decay=0.99, generator=g)
    elif name == "vq-rot":
        q = RotationTrickVQ(k, LATENT, generator=g)
    elif name == "dac-l2":
        q = DACQuantizer(k, LATENT, 1, code_dim=8, dropout=0.0, generator=g)
    elif name == "fsq":
        q = FSQ(BITS[bits]["levels"], dim=LATENT)
        return q, q.codebook_size, lambda z: _unpack(q(z), z.new_zeros(()))
    elif name == "lfq":
        q = LFQ(bits, dim=LATENT, group_size=bits // 2)
    else:
        q = BSQ(bits, LATENT, group_size=bits // 2)
    return q, getattr(q, "codebook_size", k), lambda z: _unpack(q(z))


def _unpack(out, loss=None):
    """(z_q, flat indices, auxiliary loss) of any of the quantisers' outputs."""
    return out.z_q, out.indices.reshape(-1), out.loss if loss is None else loss


def _init_codebook(torch, name: str, quant, z, *, seed: int = SEED) -> None:
    """Data-dependent start for the codebook quantisers: each code is a randomly chosen encoder output
    (projected to the code space for dac-l2) plus 1% noise, the picks drawn with seed + 5. FSQ, LFQ
    and BSQ have no codebook."""
    if name not in ("vq", "vq-ema", "vq-rot", "dac-l2"):
        return
    g = torch.Generator().manual_seed(seed + 5)
    if name == "dac-l2":
        level = quant.levels[0]
        book, z = level.codebook, level.in_proj(z)
    else:
        book = quant.codebook
    pick = z[torch.randint(0, z.shape[0], (book.shape[0],), generator=g)]
    book.copy_(pick + 0.01 * pick.std() * torch.randn(pick.shape, generator=g))
    if name == "vq-ema":
        quant.embed_sum.copy_(book * quant.cluster_size.unsqueeze(1))


def autoencoder(torch):
    """The toy's MLP encoder 32 -> 128 -> 128 -> 16 and decoder 16 -> 128 -> 128 -> 32, initialised
    from torch's global generator (seed it first): (encoder, decoder)."""
    enc = torch.nn.Sequential(
        torch.nn.Linear(IN_DIM, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, LATENT),
    )
    dec = torch.nn.Sequential(
        torch.nn.Linear(LATENT, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, IN_DIM),
    )
    return enc, dec


def run_case(name: str, bits: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    draw = _data(torch, SEED)
    enc, dec = autoencoder(torch)
    quant, num_codes, step_q = _quantizer(name, bits)
    params = [*enc.parameters(), *dec.parameters(), *quant.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    train_gen = torch.Generator().manual_seed(SEED + 2)
    eval_x = draw(N_EVAL, torch.Generator().manual_seed(SEED + 3))

    def step():
        x = draw(BATCH, train_gen)
        z_q, _, aux = step_q(enc(x))
        loss = torch.nn.functional.mse_loss(dec(z_q), x) + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with torch.no_grad():  # codebooks start on the data: K encoder outputs of fresh draws (with replacement)
        _init_codebook(torch, name, quant, enc(draw(4096, torch.Generator().manual_seed(SEED + 4))))
    for m in (enc, dec, quant):
        m.train()
    base = _maxrss_mb()
    times = []
    for i in range(steps):
        t0 = time.process_time()
        step()
        if i >= 20:
            times.append(time.process_time() - t0)
    peak = _maxrss_mb() - base

    for m in (enc, dec, quant):
        m.eval()
    return {
        "quantizer": name,
        "bits": bits,
        "codes": num_codes,
        **evaluate(torch, enc, dec, step_q, eval_x, num_codes),
        "ms": 1000 * statistics.median(times),
        "peak_mb": peak,
    }


def evaluate(torch, enc, dec, step_q, eval_x, num_codes: int) -> dict:
    """Held-out figures of a trained autoencoder (put it in eval mode first): mean squared
    reconstruction error per value, share of the num_codes codes used, perplexity of the histogram."""
    err, idx = 0.0, []
    with torch.no_grad():
        for x in eval_x.split(1024):
            z_q, indices, _ = step_q(enc(x))
            err += torch.nn.functional.mse_loss(dec(z_q), x, reduction="sum").item()
            idx.append(indices.reshape(-1))
    idx = torch.cat(idx)
    counts = torch.bincount(idx, minlength=num_codes).double()
    p = counts[counts > 0] / counts.sum()
    return {
        "recon": err / eval_x.numel(),
        "usage": (counts > 0).double().mean().item(),
        "ppl": torch.exp(-(p * p.log()).sum()).item(),
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps per quantiser (default 400, at least 21)")
    ap.add_argument("--bits", type=int, nargs="+", default=sorted(BITS), choices=sorted(BITS))
    ap.add_argument(
        "--only",
        nargs="+",
        choices=QUANTIZERS,
        default=list(QUANTIZERS),
        help="a subset (vq is always run: it is the anchor)",
    )
    ap.add_argument("--case", nargs=2, metavar=("QUANTIZER", "BITS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 21:
        print(
            f"benchmarks/quantizers.py:1: --steps {args.steps} is too few; expected at least 21 (20 are warm-up)",
            file=sys.stderr,
        )
        return 1
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.steps)))
        return 0

    import torch

    names = ["vq", *[n for n in args.only if n != "vq"]]
    print(
        f"quantizers: commit {_commit()}, {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, 1 thread, "
        f"{args.steps} steps of batch {BATCH}, seed {SEED}; anchor: plain VQ at the same bits"
    )
    header = (
        f"{'bits':>4} {'quantizer':<8} {'codes':>6} {'recon':>8} {'xVQ':>5} {'usage':>6} {'ppl':>7} "
        f"{'ms/step':>7} {'xVQ':>5} {'peak MB':>7} {'xVQ':>5}"
    )
    print(header)
    print("-" * len(header), flush=True)
    for bits in args.bits:
        anchor = None
        for name in names:
            cmd = [sys.executable, __file__, "--case", name, str(bits), "--steps", str(args.steps)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["no output"])[-1]
                print(
                    f"benchmarks/quantizers.py:1: case {name} at {bits} bits failed: {last}; expected a JSON line",
                    file=sys.stderr,
                )
                return 1
            r = json.loads(res.stdout.strip().splitlines()[-1])
            anchor = anchor or r
            x = {key: r[key] / anchor[key] if anchor[key] > 0 else float("nan") for key in ("recon", "ms", "peak_mb")}
            print(
                f"{bits:>4} {name:<8} {r['codes']:>6} {r['recon']:>8.5f} {x['recon']:>5.2f} {100 * r['usage']:>5.1f}% "
                f"{r['ppl']:>7.1f} {r['ms']:>7.2f} {x['ms']:>5.2f} {r['peak_mb']:>7.1f} {x['peak_mb']:>5.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
