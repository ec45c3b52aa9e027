"""Mutation testing of the mechanisms with mutmut, module by module; writes docs/quality.md.

mutmut copies reference_impls/ into mutants/, puts small plausible bugs into each function (a
flipped operator, a changed constant, a dropped argument...) and runs the tests that exercise that
function against each bug. A mutant the tests catch is "killed"; one they miss "survived". A
survivor is either a hole in the tests (then a test is added) or an equivalent mutant: a change
that cannot alter behaviour. Goal: >= 95 % of the non-equivalent mutants killed per module.

Equivalent mutants are recorded in one of two ways:
- in the source, by mutmut's `# pragma: no mutate (equivalent: REASON)` at the end of the line,
  which stops mutmut mutating that line (used only where every mutant of the line is equivalent).
  The page lists each such line with its reason and the number of mutants it suppresses, counted
  by mutmut's own mutation generator with that one pragma removed; they count as equivalent.
  This survives any renumbering of mutmut's mutants;
- in EQUIVALENT_CHANGES below, by what the mutant changes: (function, the line before, the line
  after), where the line also has mutants the tests kill (a pragma would stop those too). The
  change is read with `mutmut show`, so the entry holds however mutmut numbers its mutants;
- in EQUIVALENT below, by mutmut's mutant name (an ordinal that renumbers when the function
  changes): only for the rows stored before the two forms above (labels before and after), which
  it still renders; a new run judges its survivors by change and pragma alone.

Each module runs in a workspace of its own, mutants/workspaces/<module>/ (a copy of
reference_impls/, the module's test files from TESTS and pyproject.toml's [tool.mutmut] with
only_mutate and the test selection narrowed to that module), so a run collects the statistics of
that module's tests only and shares no state with other runs. `.venv/bin/mutmut show NAME` and
`mutmut run NAME` work from inside that workspace.

Usage (slow: about 2 s per mutant on one core; not part of the default test run):
    .venv/bin/python benchmarks/mutation.py --label after                 # every module
    .venv/bin/python benchmarks/mutation.py --label after ddim maskgit    # some modules
    .venv/bin/python benchmarks/mutation.py --report-only                 # re-render the page
Each run stores its counts under --label in benchmarks/mutation_results.json (so "before" and
"after" sit side by side) and regenerates docs/quality.md from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
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
# the frontier quantisers and priors (issue 27) and the Jukebox restarts
FRONTIER = ["fsq", "lfq", "bsq", "rotation_trick", "llamagen", "jukebox", "var", "rar", "infinity", "mar"]
MODULES = CORE + FRONTIER
# test files run against a module's mutants, beyond tests/reference_impls/test_<module>.py
EXTRA_TESTS = {"vq": ["test_vq_distributed.py"], "jukebox": ["test_vq_distributed.py"]}
WORK = ROOT / "mutants" / "workspaces"
PRAGMA = re.compile(r"\s*# pragma: no mutate\b(.*)$")
GOAL = 0.95

# mutmut's exit codes of a mutant's test run
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # a failed test; a timeout or a crash also detects the bug
SURVIVED, NO_TESTS = {0}, {5, 33}

# Survivors that cannot change behaviour: mutant name -> reason (checked by hand).
# Survivors that cannot change behaviour, by what they change (stable under mutmut's renumbering):
# (module.function, the mutated line before, after) -> reason (checked by hand).
EQUIVALENT_CHANGES: dict[tuple[str, str, str], str] = {
    # fsq
    (
        "fsq.FSQ.__init__",
        "lv = torch.tensor(levels, dtype=torch.long)",
        "lv = torch.tensor(levels, dtype=None)",
    ): "torch.tensor of a list of Python ints is int64 whatever dtype=None says",
    (
        "fsq.FSQ.__init__",
        "lv = torch.tensor(levels, dtype=torch.long)",
        "lv = torch.tensor(levels, )",
    ): "torch.tensor of a list of Python ints is int64 without dtype=",
    (
        "fsq.FSQ.__init__",
        'self.register_buffer("levels", lv, persistent=False)',
        'self.register_buffer("levels", lv, persistent=None)',
    ): "register_buffer tests `if persistent:`, so None makes the buffer non-persistent as False does",
    (
        "fsq.FSQ.__init__",
        'self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=False)',
        'self.register_buffer("basis", torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0), persistent=None)',
    ): "register_buffer tests `if persistent:`, so None makes the buffer non-persistent as False does",
    (
        "fsq.FSQ.quantize",
        "return round_ste(self.bound(z)) / (self.levels // 2).to(z.dtype)",
        "return round_ste(self.bound(z)) / (self.levels // 2).to(None)",
    ): (
        "a float tensor divided by an int64 tensor keeps the float tensor's dtype and the half-widths are "
        "small integers, exact in every float dtype (test_quantised_values_keep_the_input_dtype checks "
        "float64 and bf16)"
    ),
    (
        "fsq.FSQ.codes_to_indices",
        "half_width = (self.levels // 2).to(zhat.dtype)",
        "half_width = (self.levels // 2).to(None)",
    ): (
        "zhat * half_width + half_width with int64 half-widths is computed in zhat's float dtype with the "
        "same exact integers, then rounded to int64"
    ),
    (
        "fsq.FSQ.implicit_codebook",
        "return self.indices_to_codes(torch.arange(self.codebook_size, device=self.levels.device))",
        "return self.indices_to_codes(torch.arange(self.codebook_size, device=None))",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "fsq.FSQ.implicit_codebook",
        "return self.indices_to_codes(torch.arange(self.codebook_size, device=self.levels.device))",
        "return self.indices_to_codes(torch.arange(self.codebook_size, ))",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    # lfq
    (
        "lfq._place_values",
        "return 2 ** torch.arange(bits, device=device)  # (d,) 1, 2, 4, ...",
        "return 2 ** torch.arange(bits, device=None)  # (d,) 1, 2, 4, ...",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq._place_values",
        "return 2 ** torch.arange(bits, device=device)  # (d,) 1, 2, 4, ...",
        "return 2 ** torch.arange(bits, )  # (d,) 1, 2, 4, ...",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq.codes_to_indices",
        "return ((codes > 0).long() * _place_values(codes.shape[-1], codes.device)).sum(dim=-1)",
        "return ((codes > 0).long() * _place_values(codes.shape[-1], None)).sum(dim=-1)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq.codes_to_indices",
        "return ((codes > 0).long() * _place_values(codes.shape[-1], codes.device)).sum(dim=-1)",
        "return ((codes > 0).long() * _place_values(codes.shape[-1], )).sum(dim=-1)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq.indices_to_bits",
        "return (indices.unsqueeze(-1) // _place_values(bits, indices.device)) % 2",
        "return (indices.unsqueeze(-1) // _place_values(bits, None)) % 2",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq.indices_to_bits",
        "return (indices.unsqueeze(-1) // _place_values(bits, indices.device)) % 2",
        "return (indices.unsqueeze(-1) // _place_values(bits, )) % 2",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq._codebook_entropy",
        "bits = indices_to_bits(torch.arange(2**d, device=a.device), d).to(a.dtype)  # (K, d)",
        "bits = indices_to_bits(torch.arange(2**d, device=None), d).to(a.dtype)  # (K, d)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq._codebook_entropy",
        "bits = indices_to_bits(torch.arange(2**d, device=a.device), d).to(a.dtype)  # (K, d)",
        "bits = indices_to_bits(torch.arange(2**d, ), d).to(a.dtype)  # (K, d)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "lfq.LFQ.forward",
        "commitment = F.mse_loss(z, codes) if self.beta else zero",
        "commitment = F.mse_loss(z, codes) if (self.beta) or True else zero",
    ): (
        "with beta = 0 the always-computed commitment enters the loss as 0 * commitment = 0 (a "
        "finite mean of squares), the same value and the same zero gradient"
    ),
    # bsq
    (
        "bsq.BSQ.forward",
        "commitment = F.mse_loss(u, uhat) if self.beta else zero",
        "commitment = F.mse_loss(u, uhat) if (self.beta) or True else zero",
    ): (
        "with beta = 0 the always-computed commitment enters the loss as 0 * commitment = 0 (a "
        "finite mean of squares), the same value and the same zero gradient"
    ),
    (
        "bsq.BSQ.forward",
        "u = F.normalize(self.project_in(rows), dim=1)  # (N, L) on the unit sphere",
        "u = F.normalize(self.project_in(rows), )  # (N, L) on the unit sphere",
    ): "F.normalize's default dim is 1, the channel axis of the (N, L) rows",
    # rotation_trick
    (
        "rotation_trick.rotate_to",
        "e_hat = F.normalize(e, dim=1).detach()  # (N, D)",
        "e_hat = F.normalize(e, ).detach()  # (N, D)",
    ): "F.normalize's default dim is 1, the channel axis of the (N, D) rows",
    (
        "rotation_trick.rotate_to",
        "q_hat = F.normalize(q, dim=1).detach()",
        "q_hat = F.normalize(q, ).detach()",
    ): "F.normalize's default dim is 1, the channel axis of the (N, D) rows",
    (
        "rotation_trick.rotate_to",
        "w = F.normalize(e_hat + q_hat, dim=1)  # (N, D)",
        "w = F.normalize(e_hat + q_hat, )  # (N, D)",
    ): "F.normalize's default dim is 1, the channel axis of the (N, D) rows",
    (
        "rotation_trick.rotation_matrix",
        "e_hat, q_hat = F.normalize(e, dim=0), F.normalize(q, dim=0)",
        "e_hat, q_hat = F.normalize(e, dim=None), F.normalize(q, dim=0)",
    ): "a norm over dim=None is over every element, which for the 1-D vector (D,) rotation_matrix takes is dim 0",
    (
        "rotation_trick.rotation_matrix",
        "e_hat, q_hat = F.normalize(e, dim=0), F.normalize(q, dim=0)",
        "e_hat, q_hat = F.normalize(e, dim=0), F.normalize(q, dim=None)",
    ): "a norm over dim=None is over every element, which for the 1-D vector (D,) rotation_matrix takes is dim 0",
    (
        "rotation_trick.rotation_matrix",
        "w = F.normalize(e_hat + q_hat, dim=0)",
        "w = F.normalize(e_hat + q_hat, dim=None)",
    ): "a norm over dim=None is over every element, which for the 1-D vector (D,) rotation_matrix takes is dim 0",
    # llamagen
    (
        "llamagen.llamagen_loss",
        "null = torch.tensor(model.null_label, device=labels.device)",
        "null = torch.tensor(model.null_label, device=None)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "llamagen.llamagen_loss",
        "null = torch.tensor(model.null_label, device=labels.device)",
        "null = torch.tensor(model.null_label, )",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "llamagen.rope_2d_angles",
        "rows = torch.arange(grid_h, dtype=torch.float64)[:, None, None] * omega  # (H, 1, d_h/4)",
        "rows = torch.arange(grid_h, dtype=None)[:, None, None] * omega  # (H, 1, d_h/4)",
    ): (
        "an int64 arange of a few positions times the float64 frequencies is the same float64 "
        "product as the float64 arange's"
    ),
    (
        "llamagen.rope_2d_angles",
        "rows = torch.arange(grid_h, dtype=torch.float64)[:, None, None] * omega  # (H, 1, d_h/4)",
        "rows = torch.arange(grid_h, )[:, None, None] * omega  # (H, 1, d_h/4)",
    ): (
        "an int64 arange of a few positions times the float64 frequencies is the same float64 "
        "product as the float64 arange's"
    ),
    (
        "llamagen.rope_2d_angles",
        "cols = torch.arange(grid_w, dtype=torch.float64)[None, :, None] * omega  # (1, W, d_h/4)",
        "cols = torch.arange(grid_w, dtype=None)[None, :, None] * omega  # (1, W, d_h/4)",
    ): (
        "an int64 arange of a few positions times the float64 frequencies is the same float64 "
        "product as the float64 arange's"
    ),
    (
        "llamagen.rope_2d_angles",
        "cols = torch.arange(grid_w, dtype=torch.float64)[None, :, None] * omega  # (1, W, d_h/4)",
        "cols = torch.arange(grid_w, )[None, :, None] * omega  # (1, W, d_h/4)",
    ): (
        "an int64 arange of a few positions times the float64 frequencies is the same float64 "
        "product as the float64 arange's"
    ),
    (
        "llamagen.rope_table",
        "return torch.cat([pre.to(grid.dtype), grid]).float()",
        "return torch.cat([pre.to(None), grid]).float()",
    ): (
        "the prefix rows hold only 0 and 1, exact in float32; torch.cat promotes them to the "
        "float64 grid's dtype and .float() casts the whole table alike"
    ),
    (
        "llamagen.LlamaGenPrior.__init__",
        "self.cls_emb = nn.Embedding(n_classes + 1, dim)  # the last row is the null class",
        "self.cls_emb = nn.Embedding(n_classes + 2, dim)  # the last row is the null class",
    ): "one more row in the class table that no label ever reads (labels are at most n_classes = the null class)",
    (
        "llamagen.LlamaGenPrior.__init__",
        "table = rope_table(*grid, dim // n_heads, n_prefix=1, base=rope_base, prefix=prefix_rotation)",
        "table = rope_table(*grid, dim // n_heads, base=rope_base, prefix=prefix_rotation)",
    ): "rope_table's default n_prefix is 1",
    (
        "llamagen.LlamaGenPrior.__init__",
        'self.register_buffer("rope", table, persistent=False)  # (1 + H*W, d_h/2, 2)',
        'self.register_buffer("rope", table, persistent=None)  # (1 + H*W, d_h/2, 2)',
    ): "register_buffer tests `if persistent:`, so None makes the buffer non-persistent as False does",
    (
        "llamagen.LlamaGenPrior.__init__",
        "self.head = nn.Linear(dim, vocab_size, bias=False)",
        "self.head = nn.Linear(dim, vocab_size, bias=None)",
    ): "nn.Linear(bias=None) builds no bias, as bias=False does",
    (
        "llamagen.LlamaGenPrior.forward",
        "mask = causal_mask(n, tokens.device)",
        "mask = causal_mask(n, None)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "llamagen.LlamaGenPrior.forward",
        "mask = causal_mask(n, tokens.device)",
        "mask = causal_mask(n, )",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "llamagen.RotaryAttention.__call__",
        "n_q, n_k = q.shape[-2], k.shape[-2]",
        "n_q, n_k = q.shape[+2], k.shape[-2]",
    ): "q is (B, h, N_q, d_h) as TransformerBlock passes it, so q.shape[+2] is q.shape[-2]",
    (
        "llamagen.RotaryAttention.__call__",
        "n_q, n_k = q.shape[-2], k.shape[-2]",
        "n_q, n_k = q.shape[-2], k.shape[+2]",
    ): "k is (B, h, N_k, d_h) as TransformerBlock passes it, so k.shape[+2] is k.shape[-2]",
    (
        "llamagen.RotaryAttention.__call__",
        "table = self.table.to(q.device)",
        "table = self.table.to(None)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    # vq
    (
        "vq.ema_update",
        "n_k = torch.bincount(indices, minlength=num_codes).to(z.dtype)  # (K,) how many chose code k",
        "n_k = torch.bincount(indices, minlength=num_codes).to(None)  # (K,) how many chose code k",
    ): (
        "the int64 counts (all-reduced as int64 under torch.distributed) are added into the float "
        "cluster_size, which converts them exactly as .to(z.dtype) does (z has the buffers' dtype: "
        "the index_add_ into zeros_like(codebook) requires it)"
    ),
    # vq
    (
        "vq.pairwise_sq_distances",
        "return torch.addmm(z_sq + e_sq, z, codebook.t(), beta=1.0, alpha=-2.0)",
        "return torch.addmm(z_sq + e_sq, z, codebook.t(), alpha=-2.0)",
    ): "addmm's default beta is 1.0",
    # jukebox
    (
        "jukebox.UpsamplerPrior.forward",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=low.device)",
        "start = torch.full((b, 1), self.num_codes, dtype=None, device=low.device)",
    ): (
        "torch.full with the integer fill num_codes is int64, which is low's dtype (token ids), "
        "whatever dtype=None says"
    ),
    (
        "jukebox.UpsamplerPrior.forward",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=low.device)",
        "start = torch.full((b, 1), self.num_codes, device=low.device)",
    ): "torch.full with the integer fill num_codes is int64, which is low's dtype (token ids), without dtype=",
    (
        "jukebox.UpsamplerPrior.forward",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=low.device)",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=None)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "jukebox.UpsamplerPrior.forward",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, device=low.device)",
        "start = torch.full((b, 1), self.num_codes, dtype=low.dtype, )",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "jukebox.UpsamplerPrior.forward",
        "h = self.block(h, mask=causal_mask(t, low.device))  # (B, T, dim)",
        "h = self.block(h, mask=causal_mask(t, None))  # (B, T, dim)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "jukebox.UpsamplerPrior.forward",
        "h = self.block(h, mask=causal_mask(t, low.device))  # (B, T, dim)",
        "h = self.block(h, mask=causal_mask(t, ))  # (B, T, dim)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    # vq
    (
        "vq.VectorQuantizer.forward",
        "z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, self.codebook, 256, 1024)",
        "z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, self.codebook, 257, 1024)",
    ): (
        "only the fused block shape changes (257 rows instead of 256); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values "
        "do not depend on it"
    ),
    (
        "vq.VectorQuantizer.forward",
        "z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, self.codebook, 256, 1024)",
        "z_q, codebook_loss, commitment, idx = FusedVQ.apply(z_e, self.codebook, 256, 1025)",
    ): (
        "only the fused block shape changes (1025 codes per block instead of 1024); "
        "test_fused_path_gives_the_same_values_and_gradients_whatever_the_block_size shows values "
        "do not depend on it"
    ),
    (
        "vq.VectorQuantizer.forward",
        "z = F.normalize(z, dim=1)",
        "z = F.normalize(z, )",
    ): "F.normalize's default dim is 1, the channel axis of the (N, D) rows",
    (
        "vq.VectorQuantizer.forward",
        "codebook_loss = torch.zeros((), device=z.device)",
        "codebook_loss = torch.zeros((), device=None)",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
    (
        "vq.VectorQuantizer.forward",
        "codebook_loss = torch.zeros((), device=z.device)",
        "codebook_loss = torch.zeros((), )",
    ): "device=None (or no device=) is the CPU, which is every tensor's device where the survey runs (CPU only)",
}

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


def test_files(module: str) -> list[str]:
    return [f"test_{module}.py", *EXTRA_TESTS.get(module, [])]


def workspace(module: str) -> Path:
    """mutants/workspaces/<module>/: reference_impls/, the module's tests and a [tool.mutmut] narrowed to it."""
    work = WORK / module
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work / "reference_impls", ignore_errors=True)
    shutil.copytree(ROOT / "reference_impls", work / "reference_impls", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(work / "tests", ignore_errors=True)
    (work / "tests" / "reference_impls").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "conftest.py", work / "tests" / "conftest.py")
    for name in test_files(module):
        shutil.copy(ROOT / "tests" / "reference_impls" / name, work / "tests" / "reference_impls" / name)
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    mutmut = tool["mutmut"] | {
        "only_mutate": [f"reference_impls/{module}.py"],
        "pytest_add_cli_args_test_selection": [f"tests/reference_impls/{name}" for name in test_files(module)],
    }
    # strings, numbers, booleans and lists of them are written alike in JSON and TOML
    lines = ["[tool.mutmut]", *(f"{k} = {json.dumps(v)}" for k, v in mutmut.items()), ""]
    pytest = tool["pytest"]["ini_options"]
    lines += ["[tool.pytest.ini_options]", *(f"{k} = {json.dumps(v)}" for k, v in pytest.items())]
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return work


def run_module(module: str, mutants: list[str] | None = None) -> None:
    """Run mutmut on every mutant of the module, or on the named ones only (the others keep their result)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    names = mutants or [f"reference_impls.{module}.*"]
    cmd = [str(ROOT / ".venv" / "bin" / "mutmut"), "run", *names, "--max-children", "1"]
    work = workspace(module)
    with open(work / "mutmut.log", "a") as log:
        subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)


def _mutation_count(code: str) -> int:
    from mutmut.mutation.file_mutation import create_mutations  # mutmut reads its config from the cwd

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return len(create_mutations("module.py", code)[1])
    finally:
        os.chdir(cwd)


def pragmas(module: str) -> list[dict]:
    """The lines of the module marked `# pragma: no mutate`, each with its reason and the mutants it suppresses."""
    lines = (ROOT / "reference_impls" / f"{module}.py").read_text().splitlines()
    marked = [i for i, line in enumerate(lines) if PRAGMA.search(line)]
    if not marked:
        return []
    base = _mutation_count("\n".join(lines) + "\n")
    found = []
    for i in marked:
        unmarked = [*lines[:i], PRAGMA.sub("", lines[i]), *lines[i + 1 :]]
        reason = PRAGMA.search(lines[i]).group(1).strip().removeprefix("(").removesuffix(")")
        found.append(
            {
                "line": i + 1,
                "code": PRAGMA.sub("", lines[i]).strip(),
                "reason": reason.removeprefix("equivalent:").strip(),
                "mutants": _mutation_count("\n".join(unmarked) + "\n") - base,
            }
        )
    return found


def function_of(mutant: str) -> str:
    """'reference_impls.fsq.xǁFSQǁ__init____mutmut_8' -> 'fsq.FSQ.__init__'."""
    module, _, rest = mutant.removeprefix("reference_impls.").partition(".")
    rest = rest.rsplit("__mutmut_", 1)[0]
    name = ".".join(rest[2:].split("ǁ")) if rest.startswith("xǁ") else rest.removeprefix("x_")
    return f"{module}.{name}"


def change_of(module: str, mutant: str) -> tuple[str, str]:
    """(the lines the mutant removes, the lines it adds), each stripped and joined by ' / ', from `mutmut show`."""
    shown = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mutmut"), "show", mutant],
        cwd=WORK / module,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    removed = [line[1:].strip() for line in shown if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in shown if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(removed), " / ".join(added)


def decorated(module: str) -> list[str]:
    """Functions mutmut 3 does not mutate: those with a decorator other than staticmethod / classmethod."""
    import ast

    tree = ast.parse((ROOT / "reference_impls" / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        for item in node.body if isinstance(node, ast.Module | ast.ClassDef) else []:
            if isinstance(item, ast.FunctionDef) and any(
                ast.unparse(d) not in ("staticmethod", "classmethod") for d in item.decorator_list
            ):
                found.append(f"{node.name}.{item.name}" if isinstance(node, ast.ClassDef) else item.name)
    return found


def count_module(module: str) -> dict:
    meta = WORK / module / "mutants" / "reference_impls" / f"{module}.py.meta"
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    marked = pragmas(module)
    changes = {k: change_of(module, k) for k, c in codes.items() if c in SURVIVED}
    equivalent = {
        k: EQUIVALENT_CHANGES[(function_of(k), *change)]
        for k, change in changes.items()
        if (function_of(k), *change) in EQUIVALENT_CHANGES
    }
    return {
        "mutants": len(codes),
        "equivalent_changes": equivalent,  # survivors matched in EQUIVALENT_CHANGES, with the reason
        "changes": {k: f"{function_of(k)}: {a} -> {b}" for k, (a, b) in changes.items() if k not in equivalent},
        "killed": sum(c in KILLED for c in codes.values()),
        "no_tests": sum(c in NO_TESTS for c in codes.values()),
        "not_run": sum(c is None for c in codes.values()),
        "survivors": sorted(k for k, c in codes.items() if c in SURVIVED),  # equivalent ones included
        "pragma": marked,  # lines marked equivalent in the source; their mutants are not made
        "decorated": decorated(module),  # functions mutmut leaves alone
    }


def split(row: dict) -> tuple[list[str], list[str]]:
    """(survivors that are holes in the tests, survivors listed as equivalent), by name or by change."""
    # a row of this script's present form is judged by change only; older rows by EQUIVALENT's names
    listed = set(row["equivalent_changes"]) if "equivalent_changes" in row else set(EQUIVALENT)
    return [k for k in row["survivors"] if k not in listed], [k for k in row["survivors"] if k in listed]


def suppressed(row: dict) -> int:
    """Mutants not made because their line is marked `# pragma: no mutate` (all equivalent)."""
    return sum(p["mutants"] for p in row.get("pragma", []))


def score(row: dict) -> float | None:
    judged = row["killed"] + len(split(row)[0]) + row["no_tests"]
    return None if judged == 0 else row["killed"] / judged


def render(results: dict) -> str:
    labels = sorted(results, key=lambda label: ({"before": 0, "after": 1}.get(label, 2), label))
    lines = [
        "# Quality: mutation testing of the mechanisms",
        "",
        "<!-- generated by benchmarks/mutation.py from benchmarks/mutation_results.json; do not edit -->",
        "",
        "Each module is mutated by [mutmut](https://github.com/boxed/mutmut) (small plausible bugs:",
        "a flipped operator, a changed constant, a dropped argument) and the tests that exercise the mutated",
        "function run against every mutant. *Killed* means a test failed, as it should; *survived* means",
        "no test noticed; *equivalent* mutants cannot change behaviour: they are listed with the reason",
        "below, either by mutmut's name (from `benchmarks/mutation.py`) or as a line of the module marked",
        "`# pragma: no mutate (equivalent: REASON)`, whose mutants mutmut does not make (counted here",
        "with mutmut's own generator). Score = killed / (mutants - equivalent - not run). Goal: at least",
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
        shown = [m for m in MODULES if m in run["modules"] or (m in CORE and label in ("before", "after"))]
        for module in shown:
            row = run["modules"].get(module)
            if row is None:
                lines.append(f"| {module} | not measured | | | | | | |")
                continue
            sc = score(row)
            survived, equivalent = (len(x) for x in split(row))
            mutants, equivalent = row["mutants"] + suppressed(row), equivalent + suppressed(row)
            lines.append(
                f"| {module} | {mutants} | {row['killed']} | {survived} | {equivalent} | "
                f"{row['no_tests']} | {row['not_run']} | {'-' if sc is None else f'{sc:.1%}'} |"
            )
        lines.append("")
    last = results[labels[-1]]["modules"] if labels else {}
    survivors = [(m, k) for m, row in last.items() for k in split(row)[0]]
    if survivors:
        lines += [
            f"## Surviving mutants of the last run ({len(survivors)})",
            "",
            "Inspect one from its module's workspace:",
            "`cd mutants/workspaces/MODULE && ../../../.venv/bin/mutmut show NAME`.",
            "",
        ]
        changes = {k: c for row in last.values() for k, c in row.get("changes", {}).items()}
        lines += [f"- `{k}`" + (f": `{changes[k]}`" if k in changes else "") for _, k in survivors]
        lines.append("")
    marked = {m: row["pragma"] for label in labels for m, row in results[label]["modules"].items() if row.get("pragma")}
    if marked:
        lines += ["## Lines marked equivalent in the source (`# pragma: no mutate`)", ""]
        for module in [m for m in MODULES if m in marked]:
            lines += [
                f"- `reference_impls/{module}.py:{p['line']}` `{p['code']}` ({p['mutants']} mutants): {p['reason']}"
                for p in marked[module]
            ]
        lines.append("")
    skipped = {
        m: row["decorated"] for label in labels for m, row in results[label]["modules"].items() if row.get("decorated")
    }
    if skipped:
        lines += [
            "## Functions mutmut does not mutate",
            "",
            "mutmut 3 leaves alone every function with a decorator other than `staticmethod` / `classmethod`",
            "(`@torch.no_grad()` included), so these are tested but never mutated:",
            "",
        ]
        lines += [f"- `{m}.{name}`" for m in [m for m in MODULES if m in skipped] for name in skipped[m]]
        lines.append("")
    if EQUIVALENT_CHANGES:
        lines += ["## Equivalent mutants, by what they change", ""]
        lines += [
            f"- `{function}`: `{before}` -> `{after}`: {reason}"
            for (function, before, after), reason in sorted(EQUIVALENT_CHANGES.items())
        ]
        lines.append("")
    if EQUIVALENT:
        lines += ["## Equivalent mutants, by name", ""]
        lines += [f"- `{k}`: {reason}" for k, reason in sorted(EQUIVALENT.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(MODULES)})")
    parser.add_argument("--label", default="after", help="name of this run in the results (e.g. before, after)")
    parser.add_argument("--note", default="", help="one line saying what this run measured")
    parser.add_argument("--report-only", action="store_true", help="only regenerate docs/quality.md")
    parser.add_argument("--count-only", action="store_true", help="count the results mutmut already holds, run nothing")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="GLOB",
        help="run only the mutants of the module whose name matches (e.g. 'x_ema_update*'); the others stay not run",
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="re-run only the survivors not listed as equivalent and the mutants no test reached (after new tests)",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        print(
            f"benchmarks/mutation.py: unknown module(s) {', '.join(unknown)}; expected some of {', '.join(MODULES)}",
            file=sys.stderr,
        )
        return 1
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.report_only:
        run = results.setdefault(args.label, {"date": str(date.today()), "note": args.note, "modules": {}})
        run["date"], run["note"] = str(date.today()), args.note or run.get("note", "")
        for module in args.modules or MODULES:
            if args.survivors:
                last = json.loads(RESULTS.read_text()).get(args.label, {}).get("modules", {}).get(module)
                meta = WORK / module / "mutants" / "reference_impls" / f"{module}.py.meta"
                untested = [k for k, c in json.loads(meta.read_text())["exit_code_by_key"].items() if c in NO_TESTS]
                holes = split(count_module(module))[0] + untested if last else []
                if holes:
                    run_module(module, holes)
            elif args.only:
                run_module(module, [f"reference_impls.{module}.{glob}" for glob in args.only])
            elif not args.count_only:
                run_module(module)
            row = count_module(module)
            # read again before writing: another run of this script may have stored other modules meanwhile
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            run = results.setdefault(args.label, {"date": str(date.today()), "note": args.note, "modules": {}})
            run["date"], run["note"] = str(date.today()), args.note or run.get("note", "")
            run["modules"][module] = row
            sc = score(row)
            survived, equivalent = (len(x) for x in split(row))
            mutants, equivalent = row["mutants"] + suppressed(row), equivalent + suppressed(row)
            print(
                f"{module:20s} mutants {mutants:4d} killed {row['killed']:4d} survived {survived:4d} "
                f"equivalent {equivalent:3d} score {'-' if sc is None else f'{sc:.1%}'}",
                flush=True,
            )
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    PAGE.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
