#!/usr/bin/env bash
# Build (once, cached) the virtual environment that runs InvokeAI 2.3.5's own code for the
# compatibility suite (tests/test_compat235.py, tests/compat235/driver.py).
#
#   bash tools/compat235/build_venv.sh            # build or reuse; prints the venv path last
#   bash tools/compat235/build_venv.sh --force    # rebuild from scratch
#
# Where:   ${INVOKEAI235_VENV:-$HOME/.cache/invokeai-model-install/venv-invokeai-2.3.5}
#          (outside the clone: it is about 6 GB and is reused between runs and clones)
# Python:  ${PYTHON:-python3}  (3.11 is what it was checked with)
#
# invokeai==2.3.5.post2 declares Python < 3.11 and pins torch 2.0 / diffusers 0.16 / ...; it is
# installed with --no-deps --ignore-requires-python on top of the pinned set below, which imports
# and runs its ModelManager on CPython 3.11 (see docs FACTS "InvokeAI 2.3.5 is the program that
# reads our roots").  The stamp file records the pinned set + Python version: change a pin (or
# the Python) and the next run rebuilds; an interrupted build leaves no stamp and is redone.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${INVOKEAI235_VENV:-$HOME/.cache/invokeai-model-install/venv-invokeai-2.3.5}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

# The pinned set.  One requirement a line; the stamp is computed over this text.
PINS="
torch==2.14.1
torchvision==0.29.1
setuptools==80.9.0
numpy==1.23.5
diffusers==0.16.1
transformers==4.29.2
tokenizers==0.13.3
huggingface-hub==0.14.1
accelerate==0.19.0
safetensors==0.3.1
omegaconf==2.3.0
picklescan==0.0.9
einops==0.6.1
pytorch-lightning==1.7.7
torchmetrics==0.11.4
compel==1.1.5
peft==0.3.0
taming-transformers-rom1504==0.0.6
opencv-python==4.7.0.72
requests==2.28.2
pillow==9.5.0
psutil==7.2.2
npyscreen==4.10.5
"
INVOKEAI_PIN="invokeai==2.3.5.post2"
# Anything else 2.3.5 needs to import (none so far beyond the set above).
EXTRA=""

PYVER="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
STAMP_TEXT="$(printf 'python %s\n%s\n%s\n%s\n' "$PYVER" "$PINS" "$EXTRA" "$INVOKEAI_PIN")"
STAMP_FILE="$VENV/.invokeai-model-install-compat235.stamp"

check() {
  "$VENV/bin/python" - <<'PY'
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch, diffusers, transformers
import ldm.invoke.model_manager, ldm.invoke.globals, ldm.invoke.ckpt_to_diffuser  # noqa: F401
print("ok: torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)
PY
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9   # one build at a time (parallel CI jobs on one machine share the cache)

if [ "$FORCE" = 0 ] && [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP_TEXT" ] \
   && check >/dev/null 2>&1; then
  echo "compat235 venv up to date: $VENV" >&2
  echo "$VENV"
  exit 0
fi

echo "compat235: building $VENV (Python $PYVER; about 6 GB, a few minutes)" >&2
start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# shellcheck disable=SC2086
"${PIP[@]}" install --quiet $PINS $EXTRA
"${PIP[@]}" install --quiet --no-deps --ignore-requires-python "$INVOKEAI_PIN"
check >&2
printf '%s' "$STAMP_TEXT" > "$STAMP_FILE"
end=$(date +%s)
echo "compat235: built in $((end - start)) s, $(du -sh "$VENV" | cut -f1)" >&2
echo "$VENV"
