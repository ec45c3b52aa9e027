"""Speed and peak memory of every module that has a peer, beside that peer, in the same run.

The peers are those of tests/parity (docs/parity.md): vector-quantize-pytorch, diffusers,
transformers, rotary-embedding-torch, and the official EnCodec, DAC, dVAE, audiocraft patterns and
OpenCLIP loss (installed by `pip install -e '.[test,bench,parity]'` and `bash tests/parity/install.sh`).
A missing peer skips its cases with a message.

One step is what a training or sampling loop does with the module:
    quantisers            forward and backward: from z_e to (z_q, loss), then back from a fixed
                          gradient at z_q (what the decoder hands back) and from the module's own
                          loss, to the gradients of z_e and of the parameters
    schedulers, patterns  one sampling step / one sequence build, no gradient
    DiT block, RoPE, CLIP forward and backward of the block / rotation / loss
Both sides get the same seeded inputs in their own native layout (channel-first or channel-last).

Sizes are paper-like (SIZES: each with its source; "ours" marks sizes the paper does not fix).

Each case runs in its own subprocess (fresh process, nothing shared with the other side), ROUNDS
times (--rounds, default 3), the implementations of a case one after the other in every round:
    time      torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time=MIN_RUN), median of
              its blocks, after one untimed warm-up step. With one thread (the default; --threads N
              to change) the Timer reads the CPU time of that thread (time.thread_time), so the
              other processes of a shared machine do not count; with more, the wall clock. The
              figure printed is the median over the rounds
    peak MB   growth of the process's peak resident set size (getrusage ru_maxrss) from just before
              the warm-up step to the end: the extra memory the step needs at its high-water mark,
              beyond the module and the inputs (a resident-set figure, not a tensor count)
    ratio     ours / peer (time: the median of the rounds' ratios); goal: at most 1.0 x
              vector-quantize-pytorch for VQ, EMA, residual VQ, FSQ, LFQ and the rotation trick, at
              most 1.2 x the peer elsewhere (issue 27)

Run:  /path/to/venv/bin/python benchmarks/peers.py [case ...] [--threads N]   (about five minutes)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import timeit
import types
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
MIN_RUN = 1.0  # seconds of timed blocks per case
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# case -> (sizes, source of the sizes)
SIZES = {
    "vq": (
        "32 x 16 x 16 tokens, K = 1024 (code dim 256: ours)",
        "papers/chang2022maskgit.md: 16 x 16 tokens, K = 1024",
    ),
    "rvq": (
        "8 levels of K = 1024, dim 128, 8 clips x 750 frames",
        "encodec/model.py and vq.py: 75 Hz, 1024 bins, 8 levels at 6 kbps; SEANet dimension 128 (clips: ours)",
    ),
    "fsq": ("levels [8, 5, 5, 5], projections from 256 channels, 32 x 16 x 16 tokens", "levels and tokens: ours"),
    "lfq": ("12 bits (4096 codes), 32 x 16 x 16 tokens", "ours: the exact entropy over 2^18 codes does not fit"),
    "dac": (
        "9 levels of K = 1024, code dim 8, latent dim 1024, 4 x 100 frames",
        "papers/kumar2023high.md (conf/final/44khz.yml); width: dac/model/dac.py default 64 x 2^4; frames: ours",
    ),
    "chameleon": (
        "32 x 32 tokens, K = 8192, dim 256, batch 2",
        "reference_impls/chameleon.py; dim: ChameleonVQVAEConfig",
    ),
    "patterns": ("4 codebooks, 1500 frames, batch 16", "papers/copet2023simple.md: 4 codebooks of 2048; frames: ours"),
    "rope": ("16 x 16 grid, 12 heads of 64, batch 8", "papers/sun2024autoregressive.md: GPT-B, downsampling 16"),
    "clip": ("2048 pairs, dim 512", "ours (CLIP's batch of 32,768 does not fit a CPU step)"),
    "ddpm": ("latent 16 x 4 x 32 x 32, T = 1000", "T: papers/ho2020denoising.md; latent: ours"),
    "vq_diffusion": ("K = 2887 + [MASK], T = 100, 4 x 32 x 32 tokens", "papers/gu2022vector.md"),
    "dit": (
        "DiT-B block: dim 768, 12 heads, 256 tokens, batch 2",
        "facebookresearch/DiT models.py (DiT_B_2, input 32)",
    ),
    "dvae": ("K = 8192, 2 x 32 x 32 tokens, first width 128", "openai/DALL-E dall_e/decoder.py defaults"),
}

# case -> (mechanism of SIZES, the implementations: ours first, then the peers)
CASES = {
    "vq-grad": ("vq", ["ours", "ours-fused", "vqp"]),
    "vq-ema": ("vq", ["ours", "vqp"]),
    "rotation-trick": ("vq", ["ours", "vqp"]),
    "residual-vq": ("rvq", ["ours", "vqp", "encodec"]),
    "fsq": ("fsq", ["ours", "vqp"]),
    "lfq": ("lfq", ["ours", "vqp"]),
    "bsq": ("lfq", ["ours", "vqp"]),
    "dac": ("dac", ["ours", "dac"]),
    "chameleon-vq": ("chameleon", ["ours", "transformers"]),
    "delay-pattern": ("patterns", ["ours", "audiocraft", "transformers"]),
    "rope-2d": ("rope", ["ours", "rotary"]),
    "clip-loss": ("clip", ["ours", "open_clip"]),
    "ddpm-step": ("ddpm", ["ours", "diffusers"]),
    "ddim-step": ("ddpm", ["ours", "diffusers"]),
    "dynamic-threshold-step": ("ddpm", ["ours", "diffusers"]),
    "vq-diffusion-step": ("vq_diffusion", ["ours", "diffusers"]),
    "dit-block": ("dit", ["ours", "diffusers"]),
    "dvae-lookup": ("dvae", ["ours", "dall_e"]),
}


def goal(peer: str) -> float:
    """The largest time ratio ours / peer allowed: no slower than vector-quantize-pytorch, 1.2x elsewhere."""
    return 1.0 if peer == "vqp" else 1.2


def bare_import(name: str, bare: tuple[str, ...]):
    """Import module `name`, registering the packages in `bare` without running their __init__ (see
    tests/parity/conftest.py: those import torchaudio, torchvision or audiotools, never used here)."""
    for pkg in bare:
        if pkg in sys.modules:
            continue
        parent, _, leaf = pkg.rpartition(".")
        spec = importlib.machinery.PathFinder.find_spec(leaf, sys.modules[parent].__path__ if parent else None)
        if spec is None:
            raise ModuleNotFoundError(pkg)
        module = types.ModuleType(pkg)
        module.__path__, module.__spec__, module.__package__ = list(spec.submodule_search_locations), spec, pkg
        sys.modules[pkg] = module
    return importlib.import_module(name)


# ----------------------------------------------------------------------------- the steps
# build(case, impl) returns a closure running one step; inputs are made here, outside the timing


def _randn(*shape, seed=0, grad=False):
    import torch

    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return x.requires_grad_() if grad else x


def _quantiser_step(module, z, g, outputs):
    """forward, then backward from g at z_q and from the loss; outputs(module(z)) -> (z_q, loss)."""
    import torch

    def step():
        z.grad = None
        module.zero_grad(set_to_none=True)
        z_q, loss = outputs(module(z))
        if loss is None:  # FSQ has no loss
            z_q.backward(g)
        else:
            torch.autograd.backward((z_q, loss), (g, None))

    return step


def build(case: str, impl: str):  # noqa: C901  (one branch per case, read top to bottom)
    import torch

    if case in ("vq-grad", "vq-ema", "rotation-trick"):
        k, d, shape = 1024, 256, (32, 256, 16, 16)
        z, g = _randn(*shape, seed=1, grad=True), _randn(*shape, seed=2)
        if impl.startswith("ours"):
            from reference_impls.rotation_trick import RotationTrickVQ
            from reference_impls.vq import VectorQuantizer

            if case == "rotation-trick":
                m = RotationTrickVQ(k, d, beta=0.25)
            else:
                m = VectorQuantizer(k, d, beta=0.25, ema=case == "vq-ema", decay=0.99, fused=impl == "ours-fused")
            return _quantiser_step(m.train(), z, g, lambda o: (o.z_q, o.loss))
        from vector_quantize_pytorch import VectorQuantize

        kw = dict(decay=0.99) if case == "vq-ema" else dict(learnable_codebook=True, ema_update=False)
        m = VectorQuantize(
            dim=d,
            codebook_size=k,
            commitment_weight=0.25,
            kmeans_init=False,
            threshold_ema_dead_code=0,
            accept_image_fmap=True,
            rotation_trick=case == "rotation-trick",
            **kw,
        )
        return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[2]))

    if case == "residual-vq":
        k, d, nq = 1024, 128, 8
        if impl == "ours":
            from reference_impls.residual_vq import ResidualVQ

            z, g = _randn(8, d, 750, seed=1, grad=True), _randn(8, d, 750, seed=2)
            m = ResidualVQ(k, d, depth=nq, shared_codebook=False)
            return _quantiser_step(m.train(), z, g, lambda o: (o.z_q, o.loss))
        if impl == "encodec":  # the official EnCodec quantiser: EMA codebooks, channel-first
            core_vq = bare_import("encodec.quantization.core_vq", ("encodec",))
            z, g = _randn(8, d, 750, seed=1, grad=True), _randn(8, d, 750, seed=2)
            m = core_vq.ResidualVectorQuantization(
                num_quantizers=nq, dim=d, codebook_size=k, kmeans_init=False, threshold_ema_dead_code=0
            )
            return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[2].sum()))
        from vector_quantize_pytorch import ResidualVQ

        z, g = _randn(8, 750, d, seed=1, grad=True), _randn(8, 750, d, seed=2)  # its layout: channel-last
        m = ResidualVQ(
            dim=d,
            num_quantizers=nq,
            codebook_size=k,
            commitment_weight=0.25,
            kmeans_init=False,
            threshold_ema_dead_code=0,
            rotation_trick=False,
            learnable_codebook=True,
            ema_update=False,
        )
        return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[2].sum()))

    if case == "fsq":
        levels, shape = [8, 5, 5, 5], (32, 256, 16, 16)
        z, g = _randn(*shape, seed=1, grad=True), _randn(*shape, seed=2)
        if impl == "ours":
            from reference_impls.fsq import FSQ

            return _quantiser_step(FSQ(levels, dim=256).train(), z, g, lambda o: (o.z_q, None))
        from vector_quantize_pytorch import FSQ

        return _quantiser_step(FSQ(levels=levels, dim=256).train(), z, g, lambda o: (o[0], None))

    if case in ("lfq", "bsq"):
        bits = 12
        dim = bits if case == "lfq" else 256
        shape = (32, dim, 16, 16)
        z, g = _randn(*shape, seed=1, grad=True), _randn(*shape, seed=2)
        if impl == "ours":
            from reference_impls.bsq import BSQ
            from reference_impls.lfq import LFQ

            m = LFQ(bits, entropy_weight=0.1, temperature=0.01) if case == "lfq" else BSQ(bits, dim, temperature=0.01)
            return _quantiser_step(m.train(), z, g, lambda o: (o.z_q, o.loss))
        from vector_quantize_pytorch import LFQ

        kw = dict(spherical=True, has_projections=True) if case == "bsq" else {}
        m = LFQ(dim=dim, codebook_size=2**bits, entropy_loss_weight=0.1, **kw)
        return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[2]))

    if case == "dac":
        k, d, c, nq, shape = 1024, 1024, 8, 9, (4, 1024, 100)
        z, g = _randn(*shape, seed=1, grad=True), _randn(*shape, seed=2)
        if impl == "ours":
            from reference_impls.dac import DACQuantizer

            m = DACQuantizer(k, d, nq, code_dim=c, dropout=0.5, generator=torch.Generator().manual_seed(0))
            return _quantiser_step(m.train(), z, g, lambda o: (o.z_q, o.loss))
        quantize = bare_import("dac.nn.quantize", ("dac", "dac.nn"))
        m = quantize.ResidualVectorQuantize(d, nq, k, c, quantizer_dropout=0.5)
        return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[4] + 0.25 * o[3]))

    if case == "chameleon-vq":
        k, d, shape = 8192, 256, (2, 256, 32, 32)
        z, g = _randn(*shape, seed=1, grad=True), _randn(*shape, seed=2)
        if impl == "ours":
            from reference_impls.vq import VectorQuantizer

            return _quantiser_step(VectorQuantizer(k, d).train(), z, g, lambda o: (o.z_q, o.loss))
        from transformers.models.chameleon.configuration_chameleon import ChameleonVQVAEConfig
        from transformers.models.chameleon.modeling_chameleon import ChameleonVQVAEVectorQuantizer

        m = ChameleonVQVAEVectorQuantizer(ChameleonVQVAEConfig(embed_dim=d, num_embeddings=k))
        return _quantiser_step(m.train(), z, g, lambda o: (o[0], o[1]))

    if case == "delay-pattern":
        nq, t, b, pad = 4, 1500, 16, 2048
        codes = torch.randint(0, pad, (b, nq, t), generator=torch.Generator().manual_seed(0))
        if impl == "ours":
            from reference_impls.musicgen import build_sequence, delay_pattern

            pattern = delay_pattern(t, list(range(nq)))
            return lambda: build_sequence(codes, pattern, pad)
        if impl == "audiocraft":
            cp = bare_import("audiocraft.modules.codebooks_patterns", ("audiocraft", "audiocraft.modules"))
            pattern = cp.DelayedPatternProvider(nq).get_pattern(t)
            return lambda: pattern.build_pattern_sequence(codes, pad)
        from types import SimpleNamespace

        from transformers.models.musicgen.modeling_musicgen import MusicgenForCausalLM

        model = SimpleNamespace(num_codebooks=nq, config=SimpleNamespace(audio_channels=1))
        prompt = torch.cat([torch.full((b, nq, 1), pad), codes], dim=-1).reshape(b * nq, t + 1)
        return lambda: MusicgenForCausalLM.build_delay_pattern_mask(model, prompt, pad, max_length=t + nq)

    if case == "rope-2d":
        grid, heads, hd, b = 16, 12, 64, 8
        q, k = (
            _randn(b, heads, grid * grid, hd, seed=1, grad=True),
            _randn(b, heads, grid * grid, hd, seed=2, grad=True),
        )
        gq, gk = _randn(*q.shape, seed=3), _randn(*k.shape, seed=4)
        if impl == "ours":
            from reference_impls.llamagen import apply_rope, rope_table

            table = rope_table(grid, grid, hd, n_prefix=0)
            rotate = lambda x: apply_rope(x, table)  # noqa: E731
        else:
            from rotary_embedding_torch import RotaryEmbedding, apply_rotary_emb

            freqs = RotaryEmbedding(dim=hd // 2).get_axial_freqs(grid, grid).reshape(grid * grid, hd)
            rotate = lambda x: apply_rotary_emb(freqs, x)  # noqa: E731

        def step():
            q.grad = k.grad = None
            torch.autograd.backward((rotate(q), rotate(k)), (gq, gk))

        return step

    if case == "clip-loss":
        import torch.nn.functional as F

        img, txt = _randn(2048, 512, seed=1, grad=True), _randn(2048, 512, seed=2, grad=True)
        scale = torch.tensor(1 / 0.07)
        if impl == "ours":
            from reference_impls.clip import clip_loss

            loss = lambda: clip_loss(img, txt, scale)  # noqa: E731
        else:
            clip = bare_import("open_clip.loss", ("open_clip",)).ClipLoss()
            loss = lambda: clip(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), scale)  # noqa: E731

        def step():
            img.grad = txt.grad = None
            loss().backward()

        return step

    if case in ("ddpm-step", "ddim-step", "dynamic-threshold-step"):
        from reference_impls import ddpm

        shape, t = (16, 4, 32, 32), 500
        x, eps = _randn(*shape, seed=1), _randn(*shape, seed=2)
        s = ddpm.Schedule(ddpm.linear_betas(1000))
        gen = torch.Generator().manual_seed(3)
        if impl == "ours":
            tt = torch.full((shape[0],), t)
            if case == "ddpm-step":
                sigma = float(s.posterior_variance[t]) ** 0.5
                return lambda: ddpm.p_mean(s, x, tt, eps) + sigma * torch.randn(shape, generator=gen)
            if case == "ddim-step":
                from reference_impls.ddim import ddim_step

                return lambda: ddim_step(s, x, eps, t, t - 20, 0.0)
            from reference_impls.imagen import guided_step

            return lambda: guided_step(s, x, t, eps, eps, 0.0, "dynamic", 0.995, gen)
        from diffusers import DDIMScheduler, DDPMScheduler

        if case == "ddim-step":
            sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True)
            sched.set_timesteps(50)  # leading spacing: t - 1000 // 50 = t - 20, as ours
            return lambda: sched.step(eps, t, x, eta=0.0)
        kw = dict(thresholding=True, sample_max_value=float("inf")) if case == "dynamic-threshold-step" else {}
        sched = DDPMScheduler(num_train_timesteps=1000, clip_sample=False, **kw)
        sched.set_timesteps(1000)
        return lambda: sched.step(eps, t, x, generator=gen)

    if case == "vq-diffusion-step":
        from reference_impls import discrete_diffusion as dd

        k, steps, b, n, t = 2887, 100, 4, 32 * 32, 50
        gen = torch.Generator().manual_seed(0)
        xt = torch.randint(0, k + 1, (b, n), generator=gen)
        log_p0 = torch.log_softmax(torch.randn(b, n, k, generator=gen), dim=-1)
        if impl == "ours":
            s = dd.mask_and_replace_schedule(*dd.vq_diffusion_cumulative(steps), k)
            tt = torch.full((b,), t)

            def step():
                p = dd.pad_to_states(log_p0.exp().double(), k + 1)
                return dd.sample_categorical(dd.p_reverse_probs(s, p, xt, tt), gen)

            return step
        from diffusers import VQDiffusionScheduler

        sched = VQDiffusionScheduler(num_vec_classes=k + 1, num_train_timesteps=steps)
        log_p0_t = log_p0.transpose(1, 2).contiguous()  # its layout: (B, K, N)
        return lambda: sched.step(log_p0_t, t - 1, xt, generator=gen)

    if case == "dit-block":
        dim, heads, tokens, b, classes = 768, 12, 256, 2, 1000
        x, gx = _randn(b, tokens, dim, seed=1, grad=True), _randn(b, tokens, dim, seed=2)
        t, y = torch.tensor([10, 900]), torch.tensor([3, classes])
        if impl == "ours":
            from reference_impls.attention import sinusoidal_embedding
            from reference_impls.dit import DiT

            model = DiT(input_size=2, patch=1, in_channels=4, dim=dim, depth=1, n_heads=heads, n_classes=classes)
            block = model.blocks[0]
            forward = lambda: block(x, model.t_mlp(sinusoidal_embedding(t, 256)) + model.y_emb(y))  # noqa: E731
            params = model
        else:
            from diffusers.models.attention import BasicTransformerBlock

            params = BasicTransformerBlock(
                dim,
                heads,
                dim // heads,
                activation_fn="gelu-approximate",
                num_embeds_ada_norm=classes,
                norm_type="ada_norm_zero",
                attention_bias=True,
            ).eval()  # eval: no label dropout (ours drops labels outside the block)
            forward = lambda: params(x, timestep=t, class_labels=y)  # noqa: E731

        def step():
            x.grad = None
            params.zero_grad(set_to_none=True)
            forward().backward(gx)

        return step

    if case == "dvae-lookup":
        import torch.nn.functional as F

        k, n_init, b = 8192, 128, 2
        idx = torch.randint(0, k, (b, 32, 32), generator=torch.Generator().manual_seed(0))
        if impl == "ours":
            from reference_impls.dvae import DVAE

            m = DVAE(in_ch=3, num_codes=k, code_dim=n_init)
            return lambda: m.lookup(idx)
        import dall_e

        layer = dall_e.Decoder(n_init=n_init, vocab_size=k, use_mixed_precision=False).blocks.input
        return lambda: layer(F.one_hot(idx, k).permute(0, 3, 1, 2).float())  # the release's decoder input

    raise ValueError(f"unknown case {case!r}")


# ----------------------------------------------------------------------------- measuring


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(case: str, impl: str, threads: int) -> dict:
    import torch
    from torch.utils.benchmark import Timer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step = build(case, impl)
    base = _maxrss_mb()
    step()  # warm-up
    clock = time.thread_time if threads == 1 else timeit.default_timer
    m = Timer("step()", globals={"step": step}, num_threads=threads, timer=clock).blocked_autorange(
        min_run_time=MIN_RUN
    )
    return {"time": m.median, "peak_mb": _maxrss_mb() - base, "runs": len(m.times)}


def run(case: str, impl: str, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", case, impl, "--threads", str(threads)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", help=f"some of: {', '.join(CASES)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure(*args.one, args.threads)))
        return
    import torch

    cases = args.cases or list(CASES)
    clock = "thread CPU time" if args.threads == 1 else "wall clock"
    print(
        f"peers.py: CPU, torch {torch.__version__}, {args.threads} thread(s), {clock}, median of >= {MIN_RUN} s "
        f"of steps per process, median of {args.rounds} rounds of fresh processes"
    )
    print(f"{'case':<24}{'impl':<14}{'step ms':>10}{'peak MB':>9}   ours / peer: time (rounds), memory (goal)")
    verdicts = []
    for case in cases:
        _, impls = CASES[case]
        rounds: dict[str, list[dict]] = {impl: [] for impl in impls}
        for _ in range(args.rounds):
            for impl in impls:
                rounds[impl].append(run(case, impl, args.threads))
        ok_runs = {impl: [r for r in rs if "error" not in r] for impl, rs in rounds.items()}
        for impl, rs in rounds.items():
            if not ok_runs[impl]:
                print(f"{case:<24}{impl:<14}   skipped: {rs[0]['error'][:90]}")
                continue
            t, mb = median(r["time"] for r in ok_runs[impl]), median(r["peak_mb"] for r in ok_runs[impl])
            print(f"{case:<24}{impl:<14}{1000 * t:>10.2f}{mb:>9.0f}")
        ours_impls = [i for i in impls if i.startswith("ours")]
        for peer in (i for i in impls if not i.startswith("ours")):
            for mine in ours_impls:
                pairs = [(o, p) for o, p in zip(rounds[mine], rounds[peer], strict=True) if "error" not in o | p]
                if not pairs:
                    continue
                per_round = [o["time"] / p["time"] for o, p in pairs]
                t_ratio = median(per_round)
                p_mb = median(p["peak_mb"] for _, p in pairs)
                o_mb = median(o["peak_mb"] for o, _ in pairs)
                m_ratio = f"{o_mb / p_mb:.2f}" if p_mb >= 1 else "n/a (peer < 1 MB)"
                ok = t_ratio <= goal(peer)
                verdicts.append((case, mine, peer, t_ratio, ok))
                spread = ", ".join(f"{r:.2f}" for r in per_round)
                print(
                    f"{'':<24}{mine + ' / ' + peer:<30} time {t_ratio:5.2f}x ({spread})  memory {m_ratio}  "
                    f"(<= {goal(peer):.1f}x: {'met' if ok else 'MISSED'})"
                )
    print()
    print("sizes:")
    for mech, (sizes, source) in SIZES.items():
        if mech not in {CASES[c][0] for c in cases}:
            continue
        print(f"  {mech:<13} {sizes} ({source})")
    missed = [v for v in verdicts if not v[4]]
    print(f"goals met: {len(verdicts) - len(missed)} of {len(verdicts)} comparisons")
    for case, mine, peer, ratio, _ in missed:
        print(f"  missed: {case} {mine} / {peer} = {ratio:.2f}x")


if __name__ == "__main__":
    main()
