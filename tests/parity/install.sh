#!/usr/bin/env bash
# Installs the parity peers that cannot be installed with their dependencies into a venv
# (default: the repository's .venv):  bash tests/parity/install.sh [VENV]
#
# Each of these asks, directly or through torchaudio / torchvision / audiotools, for another torch
# than the pinned 2.13.0 CPU build (audiocraft pins one outright). They are installed with
# --no-deps, then only what the compared code imports: encodec.quantization (einops, numpy),
# dac.nn.quantize (einops, numpy), dall_e (attrs, numpy, requests), open_clip.loss and
# audiocraft.modules.codebooks_patterns (torch only). tests/parity imports those modules with the
# packages' __init__ skipped, so torchaudio, torchvision, audiotools and the rest are never needed.
# The peers that install cleanly with their dependencies are the `parity` extra of pyproject.toml:
#   pip install -e '.[test,parity]'
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$root/.venv}"
pip="$venv/bin/pip"
before="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
"$pip" install --no-deps encodec==0.1.1 descript-audio-codec==1.0.0 dall-e==0.1 open-clip-torch==3.3.0 audiocraft==1.3.0
"$pip" install "einops>=0.8" "numpy>=2.0" "attrs>=23" "requests>=2.31"
after="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"
if [ "$before" != "$after" ]; then
  echo "install.sh: torch changed from $before to $after" >&2
  exit 1
fi
echo "parity peers installed into $venv (torch $after)"
