#!/usr/bin/env bash
# Runs the reference set on a machine with an NVIDIA GPU, offline, in a checkout that
# tools/gpu/prepare.sh filled (.whl/ and .data/mnist/):
#   bash tools/gpu/run.sh OUT [BUDGET_S]
# It installs the wheels of .whl/ with pip --no-index into .whl/site (put on PYTHONPATH), shows
# which libraries this Python has and which card this is, then runs tools/reference-set.sh OUT
# [BUDGET_S] on this checkout's code ($PYTHON -m softmax_core.cli; PYTHON defaults to python3)
# with SOFTMAX_DEVICE=gpu, unless set otherwise: SOFTMAX_DEVICE=cpu rehearses it on a CPU.
set -u
[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: tools/gpu/run.sh OUT [BUDGET_S]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$ROOT/.whl/site" \
    "$ROOT"/.whl/*.whl || { echo "run: installing the wheels of .whl/ failed" >&2; exit 1; }
  export PYTHONPATH=$ROOT/.whl/site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "run: no wheels in .whl/ (tools/gpu/prepare.sh puts them there): this Python's own" >&2
fi
"$PY" - <<'PY'
import importlib

for m in ("numpy", "pandas", "matplotlib", "array_api_compat", "array_api_strict", "psutil",
          "threadpoolctl", "tqdm", "tabulate", "pytest", "torch", "cupy"):
    try:
        print(f"  {m} {getattr(importlib.import_module(m), '__version__', '?')}")
    except Exception as exc:
        print(f"  {m} does not import: {exc}")
PY
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
export SOFTMAX_DEVICE=${SOFTMAX_DEVICE:-gpu} PYTHON=$PY PYTHONUNBUFFERED=1
export SOFTMAX_BENCH=${SOFTMAX_BENCH:-$PY -m softmax_core.cli}
exec bash "$ROOT/tools/reference-set.sh" "$@"
