"""Mutation testing of the core mechanisms with mutmut, module by module; writes docs/quality.md.

mutmut (configured in pyproject.toml, [tool.mutmut]) copies reference_impls/ into mutants/, puts
small plausible bugs into each function (a flipped operator, a changed constant, a dropped
argument...) and runs the tests that exercise that function against each bug. A mutant the tests
catch is "killed"; one they miss "survived". A survivor is either a hole in the tests (then a test
is added) or an equivalent mutant: a change that cannot alter behaviour (then it is listed in
EQUIVALENT below with the reason). Goal: >= 95 % of the non-equivalent mutants killed per module.

Usage (slow: about 2 s per mutant on one core; not part of the default test run):
    .venv/bin/python benchmarks/mutation.py --label after                 # every core module
    .venv/bin/python benchmarks/mutation.py --label after ddim maskgit    # some modules
    .venv/bin/python benchmarks/mutation.py --report-only                 # re-render the page
Each run stores its counts under --label in benchmarks/mutation_results.json (so "before" and
"after" sit side by side) and regenerates docs/quality.md from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "mutation_results.json"
PAGE = ROOT / "docs" / "quality.md"
CORE = [
    "vq",
    "residual_vq",
    "gumbel",
    "dvae",
    "attention",
    "ar_prior",
    "maskgit",
    "muse",
    "discrete_diffusion",
    "ddpm",
    "ddim",
    "guidance",
    "latent_diffusion",
]
GOAL = 0.95

# mutmut's exit codes of a mutant's test run
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # a failed test; a timeout or a crash also detects the bug
SURVIVED, NO_TESTS = {0}, {5, 33}

# Survivors that cannot change behaviour: mutant name -> reason (checked by hand).
EQUIVALENT: dict[str, str] = {
    "reference_impls.guidance.x_drop_condition__mutmut_10": (
        "`rand <= p` differs from `rand < p` only when a float32 uniform equals p exactly (probability 2^-24 per "
        "draw): the drop probability is the same"
    ),
    "reference_impls.guidance.x_drop_condition__mutmut_6": (
        "torch.rand(device=None) is the CPU, which is cond.device everywhere the survey runs (CPU only)"
    ),
    "reference_impls.guidance.x_drop_condition__mutmut_9": (
        "dropping device= leaves torch.rand on the CPU, which is cond.device everywhere the survey runs (CPU only)"
    ),
    "reference_impls.maskgit.x_generate__mutmut_5": (
        "torch.full with the integer fill mask_id is int64 whatever dtype=None says"
    ),
    "reference_impls.maskgit.x_generate__mutmut_8": "torch.full with the integer fill mask_id is int64 without dtype=",
    "reference_impls.maskgit.xǁMaskedTransformerǁ__init____mutmut_12": (
        "one more row in the token table that no id ever reads (ids are at most K = [MASK])"
    ),
    "reference_impls.maskgit.xǁMaskedTransformerǁ__init____mutmut_30": (
        "one more row in the position table that forward never reads (it slices pos[:length])"
    ),
    "reference_impls.maskgit.xǁMaskedTransformerǁ__init____mutmut_31": (
        "one more row in the position table that forward never reads (it slices pos[:length])"
    ),
    "reference_impls.maskgit.xǁMaskedTransformerǁ__init____mutmut_32": (
        "one more row in the position table that forward never reads (it slices pos[:length])"
    ),
    "reference_impls.maskgit.xǁMaskedTransformerǁforward__mutmut_12": (
        "x - pos with a learned pos of symmetric N(0, 0.02^2) initialisation is x + pos' with pos' = -pos: the same "
        "model family and the same initial distribution"
    ),
    "reference_impls.ddpm.x__gather__mutmut_5": (
        "values.to(None) keeps the CPU device, which is like.device where the survey runs (CPU only)"
    ),
    "reference_impls.ddpm.x_eps_loss__mutmut_6": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ddpm.x_eps_loss__mutmut_11": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ddpm.x_eps_loss__mutmut_18": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ddpm.x_eps_loss__mutmut_22": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.attention.x_causal_mask__mutmut_4": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.attention.x_causal_mask__mutmut_8": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.attention.x_sinusoidal_embedding__mutmut_12": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.attention.x_sinusoidal_embedding__mutmut_17": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.attention.x_scaled_dot_product_attention__mutmut_23": "float('-INF') is float('-inf')",
    "reference_impls.attention.x_sinusoidal_embedding__mutmut_22": (
        "pos / (a float64 tensor) is promoted to float64 whatever pos's dtype, so pos.to(None) changes nothing"
    ),
    "reference_impls.attention.xǁTransformerBlockǁforward__mutmut_30": (
        "h * (a bool tensor) promotes the bool to h's dtype, so .to(None) changes nothing"
    ),
    "reference_impls.ar_prior.x_pb_relaxed_attention__mutmut_1": (
        "PB-relaxation is exact for every alpha (the scale cancels); alpha only changes the size of intermediate scores"
    ),
    "reference_impls.ar_prior.x_pb_relaxed_attention__mutmut_26": "float('-INF') is float('-inf')",
    "reference_impls.ar_prior.x_pb_relaxed_attention__mutmut_30": (
        "softmax is invariant to subtracting any constant, and the global max also bounds every score"
    ),
    "reference_impls.ar_prior.x_pb_relaxed_attention__mutmut_32": (
        "softmax is invariant to subtracting any constant, and the global max also bounds every score"
    ),
    "reference_impls.ar_prior.x_pb_relaxed_layer_norm__mutmut_2": (
        "LayerNorm without epsilon is invariant to any positive scale of its input, so x * max|x| normalises like x / "
        "max|x|"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_12": (
        "cumsum over dim +1 of the (R, V) matrix is the cumsum over dim -1"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_16": (
        "u is created on the CPU; .to(None) keeps it there, which is cdf.device (CPU only)"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_37": (
        "searchsorted left and right differ only when u equals a cumulative sum exactly (probability 0 for a float64 "
        "uniform)"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_38": (
        "searchsorted left and right differ only when u equals a cumulative sum exactly (probability 0 for a float64 "
        "uniform)"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_39": "squeeze(+1) of an (R, 1) tensor is squeeze(-1)",
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_40": (
        "squeeze(-2) of an (R, 1) tensor removes nothing when R > 1 and then view() restores the shape; for R = 1 it "
        "gives the same single index"
    ),
    "reference_impls.ar_prior.x_sample_from_probs__mutmut_41": (
        "u < cdf[-1] always (rand < 1), so the index never exceeds V - 1 and the clamp never acts"
    ),
    "reference_impls.ar_prior.x_top_k_filter__mutmut_12": "topk's default dim is -1",
    "reference_impls.ar_prior.x_top_k_filter__mutmut_24": "float('-INF') is float('-inf')",
    "reference_impls.ar_prior.x_top_p_filter__mutmut_39": "float('-INF') is float('-inf')",
    "reference_impls.ar_prior.x_top_p_filter__mutmut_4": "sort's default dim is -1",
    "reference_impls.ar_prior.x_kmeans__mutmut_25": "float sums divided by integer counts give the same float quotient",
    "reference_impls.ar_prior.xǁTokenPriorǁ__init____mutmut_32": (
        "nn.Linear(bias=None) builds no bias, as bias=False does"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁ_embed__mutmut_10": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁ_embed__mutmut_13": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁforward__mutmut_9": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁforward__mutmut_11": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁforward_incremental__mutmut_14": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁforward_incremental__mutmut_16": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.ar_prior.xǁTokenPriorǁ_embed__mutmut_15": (
        "tok - pos with a learned pos of symmetric N(0, 1) initialisation is tok + pos' with pos' = -pos"
    ),
    "reference_impls.ddpm.x_eps_loss__mutmut_7": "torch.randint(high, size) is torch.randint(0, high, size)",
    "reference_impls.ddpm.xǁScheduleǁ__init____mutmut_16": "torch.cat promotes the float32 1.0 to float64 exactly",
    "reference_impls.ddpm.xǁScheduleǁ__init____mutmut_18": "torch.cat promotes the float32 1.0 to float64 exactly",
    # discrete_diffusion
    "reference_impls.discrete_diffusion.x__with_identity__mutmut_3": (
        "torch.cat with the float64 rates promotes the float32 1.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x__with_identity__mutmut_5": (
        "torch.cat with the float64 rates promotes the float32 1.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x__with_identity__mutmut_8": (
        "torch.cat with the float64 rates promotes the float32 0.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x__with_identity__mutmut_10": (
        "torch.cat with the float64 rates promotes the float32 0.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x_mask_and_replace_schedule__mutmut_9": (
        "torch.cat with the float64 alpha_bars promotes the float32 1.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x_mask_and_replace_schedule__mutmut_11": (
        "torch.cat with the float64 alpha_bars promotes the float32 1.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x_mask_and_replace_schedule__mutmut_18": (
        "torch.cat with the float64 gamma_bars promotes the float32 0.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x_mask_and_replace_schedule__mutmut_20": (
        "torch.cat with the float64 gamma_bars promotes the float32 0.0 to float64 exactly"
    ),
    "reference_impls.discrete_diffusion.x__rates__mutmut_4": (
        "rate.to(None) keeps the CPU device, which is like.device where the survey runs (CPU only)"
    ),
    "reference_impls.discrete_diffusion.x__row__mutmut_29": (
        "a is a schedule rate, float64 by DiscreteSchedule's contract and every constructor, so a * is_data is "
        "float64 already and .to(None) changes nothing"
    ),
    "reference_impls.discrete_diffusion.x_p_reverse_probs__mutmut_28": (
        "p meets a float64 operand before every use (the reciprocal of the float64 rates, the float64 q at x_t), "
        "which converts a float32 x0_probs exactly, as .to(float64) does"
    ),
    "reference_impls.discrete_diffusion.x_vlb_terms__mutmut_12": (
        "q_posterior converts its x0_probs to float64 on entry, so the int64 one-hot becomes the same float64 "
        "one-hot there"
    ),
    # dvae
    "reference_impls.dvae.xǁDVAEǁmix__mutmut_8": (
        "einsum labels are arbitrary letters: 'BKHW,KD->BDHW' is the same contraction as 'bkhw,kd->bdhw'"
    ),
    "reference_impls.dvae.xǁDVAEǁforward__mutmut_10": (
        "gumbel_softmax tests `if not hard`, so hard=None returns the relaxed sample as hard=False does"
    ),
    "reference_impls.dvae.xǁDVAEǁforward__mutmut_12": (
        "softmax with dim=None on a 4-D tensor takes torch's legacy implicit dim 1, the K axis of the (B, K, h, w) "
        "logits the conv encoder always gives (mix and lookup accept only 4-D)"
    ),
    "reference_impls.dvae.xǁDVAEǁforward__mutmut_15": "gumbel_softmax's default is hard=False",
    # latent_diffusion
    "reference_impls.latent_diffusion.xǁCrossAttentionǁ__init____mutmut_9": (
        "nn.Linear(bias=None) builds no bias, as bias=False does (W_Q)"
    ),
    "reference_impls.latent_diffusion.xǁCrossAttentionǁ__init____mutmut_17": (
        "nn.Linear(bias=None) builds no bias, as bias=False does (W_K)"
    ),
    "reference_impls.latent_diffusion.xǁCrossAttentionǁ__init____mutmut_25": (
        "nn.Linear(bias=None) builds no bias, as bias=False does (W_V)"
    ),
    # muse
    "reference_impls.muse.xǁMuseTransformerǁ__init____mutmut_11": (
        "one more row in the token table that no id ever reads (ids are at most K = [MASK])"
    ),
    "reference_impls.muse.xǁMuseSuperResǁ__init____mutmut_37": (
        "one more row in the high-res token table that no id ever reads (ids are at most K_hi = [MASK])"
    ),
    "reference_impls.muse.xǁMuseTransformerǁforward__mutmut_2": (
        "x - pos with a learned pos of symmetric N(0, 0.02^2) initialisation is x + pos' with pos' = -pos: the same "
        "model family and the same initial distribution"
    ),
    "reference_impls.muse.xǁMuseSuperResǁcontext__mutmut_2": (
        "x - pos with a learned pos of symmetric N(0, 0.02^2) initialisation is x + pos' with pos' = -pos: the same "
        "model family and the same initial distribution"
    ),
    "reference_impls.muse.xǁMuseSuperResǁforward__mutmut_7": (
        "x - pos with a learned pos of symmetric N(0, 0.02^2) initialisation is x + pos' with pos' = -pos: the same "
        "model family and the same initial distribution"
    ),
    "reference_impls.muse.x_generate__mutmut_9": (
        "torch.full with the integer fill mask_id is int64 whatever dtype=None says"
    ),
    "reference_impls.muse.x_generate__mutmut_12": "torch.full with the integer fill mask_id is int64 without dtype=",
    "reference_impls.muse.x_super_resolve__mutmut_9": (
        "torch.full with the integer fill mask_id is int64 whatever dtype=None says"
    ),
    "reference_impls.muse.x_super_resolve__mutmut_12": (
        "torch.full with the integer fill mask_id is int64 without dtype="
    ),
    # vq
    "reference_impls.vq.x_ema_update__mutmut_4": (
        "the int64 counts are added into the float cluster_size, which converts them exactly as .to(z.dtype) does (z "
        "has the buffers' dtype: the index_add_ into zeros_like(codebook) requires it)"
    ),
    "reference_impls.vq.x_from_rows__mutmut_8": "rows is (N, D), so rows.shape[+1] is rows.shape[-1]",
    "reference_impls.vq.x_nearest_code__mutmut_1": (
        "the chunk only sets how many rows share one product; a row's distances and argmin do not depend on it "
        "(test_nearest_code_equals_brute_force_argmin checks chunk=7 too)"
    ),
    "reference_impls.vq.x_pairwise_sq_distances__mutmut_23": "addmm's default beta is 1.0",
    "reference_impls.vq.x_perplexity__mutmut_5": (
        "without minlength only the trailing codes nobody chose drop out; each added 0 * log(1e-10) = 0 to the entropy"
    ),
    "reference_impls.vq.xǁFusedVQǁbackward__mutmut_12": (
        "empty_like's default keeps flat's strides; the loop writes every element and the final view only splits the "
        "last dim, so the gradient has the same values (its strides may differ)"
    ),
    "reference_impls.vq.xǁFusedVQǁbackward__mutmut_14": (
        "empty_like's default keeps flat's strides; the loop writes every element and the final view only splits the "
        "last dim, so the gradient has the same values (its strides may differ)"
    ),
    "reference_impls.vq.xǁFusedVQǁbackward__mutmut_30": (
        "codes * n_k promotes the int64 counts to the codes' float dtype: the same products"
    ),
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_176": "group and k_i both have n rows: zip's strict check never acts",
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_179": "group and k_i both have n rows: zip's strict check never acts",
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_180": "group and k_i both have n rows: zip's strict check never acts",
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_41": (
        "only the block shape changes (2 positions instead of 1 when rows < 4); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values do not depend on it"
    ),
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_43": (
        "only the block shape changes (rows // 3 positions per image); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values do not depend on it"
    ),
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_49": (
        "only the block shape changes (at least 2 images per block); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values do not depend on it"
    ),
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_80": (
        "a step of 1 makes the position blocks overlap; each position is last recomputed, from the first block of "
        "codes on, by the block that starts at it, so minima and indices are the same (only slower)"
    ),
    "reference_impls.vq.xǁFusedVQǁforward__mutmut_94": (
        "a step of 1 makes the code blocks overlap; the running minimum over them is the same minimum with the same "
        "global index (i + k0), ties still keeping the lower index (only slower)"
    ),
    "reference_impls.vq.xǁVectorQuantizerǁcodes__mutmut_6": "F.normalize's default dim is 1",
    "reference_impls.vq.xǁVectorQuantizerǁforward__mutmut_10": (
        "only the fused block shape changes (257 rows instead of 256); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values do not depend on it"
    ),
    "reference_impls.vq.xǁVectorQuantizerǁforward__mutmut_11": (
        "only the fused block shape changes (1025 codes per block instead of 1024); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values do not depend on it"
    ),
    "reference_impls.vq.xǁVectorQuantizerǁforward__mutmut_39": "F.normalize's default dim is 1",
    "reference_impls.vq.xǁVectorQuantizerǁforward__mutmut_70": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
    "reference_impls.vq.xǁVectorQuantizerǁforward__mutmut_72": (
        "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)"
    ),
}


def run_module(module: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [str(ROOT / ".venv" / "bin" / "mutmut"), "run", f"reference_impls.{module}.*", "--max-children", "1"]
    subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def count_module(module: str) -> dict:
    meta = ROOT / "mutants" / "reference_impls" / f"{module}.py.meta"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return {
        "mutants": len(codes),
        "killed": sum(c in KILLED for c in codes.values()),
        "no_tests": sum(c in NO_TESTS for c in codes.values()),
        "not_run": sum(c is None for c in codes.values()),
        "survivors": sorted(k for k, c in codes.items() if c in SURVIVED),  # equivalent ones included
    }


def split(row: dict) -> tuple[list[str], list[str]]:
    """(survivors that are holes in the tests, survivors listed as equivalent), from EQUIVALENT as it is now."""
    return [k for k in row["survivors"] if k not in EQUIVALENT], [k for k in row["survivors"] if k in EQUIVALENT]


def score(row: dict) -> float | None:
    judged = row["killed"] + len(split(row)[0]) + row["no_tests"]
    return None if judged == 0 else row["killed"] / judged


def render(results: dict) -> str:
    labels = sorted(results, key=lambda label: ({"before": 0, "after": 1}.get(label, 2), label))
    lines = [
        "# Quality: mutation testing of the core mechanisms",
        "",
        "<!-- generated by benchmarks/mutation.py from benchmarks/mutation_results.json; do not edit -->",
        "",
        "Each core module is mutated by [mutmut](https://github.com/boxed/mutmut) (small plausible bugs:",
        "a flipped operator, a changed constant, a dropped argument) and the tests that exercise the mutated",
        "function run against every mutant. *Killed* means a test failed, as it should; *survived* means",
        "no test noticed; *equivalent* mutants cannot change behaviour and are listed with the reason",
        "in `benchmarks/mutation.py`. Score = killed / (mutants - equivalent - not run). Goal: at least",
        f"{GOAL:.0%} in every module. Command: `.venv/bin/python benchmarks/mutation.py --label after`.",
        "",
    ]
    for label in labels:
        run = results[label]
        lines += [
            f"## {label} ({run['date']}: {run['note']})",
            "",
            "| module | mutants | killed | survived | equivalent | no test | not run | score |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for module in CORE:
            row = run["modules"].get(module)
            if row is None:
                lines.append(f"| {module} | not measured | | | | | | |")
                continue
            sc = score(row)
            survived, equivalent = (len(x) for x in split(row))
            lines.append(
                f"| {module} | {row['mutants']} | {row['killed']} | {survived} | {equivalent} | "
                f"{row['no_tests']} | {row['not_run']} | {'-' if sc is None else f'{sc:.1%}'} |"
            )
        lines.append("")
    last = results[labels[-1]]["modules"] if labels else {}
    survivors = [(m, k) for m, row in last.items() for k in split(row)[0]]
    if survivors:
        lines += [
            f"## Surviving mutants of the last run ({len(survivors)})",
            "",
            "Inspect one with `.venv/bin/mutmut show NAME`.",
            "",
        ]
        lines += [f"- `{k}`" for _, k in survivors]
        lines.append("")
    if EQUIVALENT:
        lines += ["## Equivalent mutants", ""]
        lines += [f"- `{k}`: {reason}" for k, reason in sorted(EQUIVALENT.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"core modules to mutate (default: all of {', '.join(CORE)})")
    parser.add_argument("--label", default="after", help="name of this run in the results (e.g. before, after)")
    parser.add_argument("--note", default="", help="one line saying what this run measured")
    parser.add_argument("--report-only", action="store_true", help="only regenerate docs/quality.md")
    parser.add_argument("--count-only", action="store_true", help="count the results mutmut already holds, run nothing")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        print(
            f"benchmarks/mutation.py: unknown module(s) {', '.join(unknown)}; expected some of {', '.join(CORE)}",
            file=sys.stderr,
        )
        return 1
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.report_only:
        run = results.setdefault(args.label, {"date": str(date.today()), "note": args.note, "modules": {}})
        run["date"], run["note"] = str(date.today()), args.note or run.get("note", "")
        for module in args.modules or CORE:
            if not args.count_only:
                run_module(module)
            run["modules"][module] = count_module(module)
            row = run["modules"][module]
            sc = score(row)
            survived, equivalent = (len(x) for x in split(row))
            print(
                f"{module:20s} mutants {row['mutants']:4d} killed {row['killed']:4d} survived {survived:4d} "
                f"equivalent {equivalent:3d} score {'-' if sc is None else f'{sc:.1%}'}",
                flush=True,
            )
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    PAGE.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
