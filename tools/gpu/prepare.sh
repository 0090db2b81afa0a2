#!/usr/bin/env bash
# Prepares a run on a machine with an NVIDIA GPU that has no network. Run it here, where pip's
# index and MNIST are at hand, in the checkout:
#   bash tools/gpu/prepare.sh [MNIST_DIR]
# .whl/        the wheels such a machine's Python usually lacks (array-api-compat and
#              array-api-strict, the versions this checkout is tested with), for CPython
#              $GPU_PYTHON (default 3.12) on x86-64 Linux;
# .data/mnist/ the four MNIST IDX files, from MNIST_DIR (default: $SOFTMAX_DATA_DIR, else
#              ../shared/data/mnist).
# Both folders are ignored by git. PYTHON=... picks the Python whose pip downloads.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
MNIST=${1:-${SOFTMAX_DATA_DIR:-../shared/data/mnist}}
[ -d "$MNIST" ] || { echo "prepare: no MNIST folder $MNIST: pass MNIST_DIR" >&2; exit 2; }

mkdir -p .whl .data/mnist
for name in array-api-compat array-api-strict; do
  version=$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")
  rm -f .whl/"${name//-/_}"-*.whl # one version of each: two stop the install
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
for f in train-images-idx3 train-labels-idx1 t10k-images-idx3 t10k-labels-idx1; do
  cp -L "$MNIST/$f-ubyte.gz" .data/mnist/
done
chmod -R u+w .data
for d in .whl .data; do
  git check-ignore -q "$d/x" || { echo "prepare: $d/ must be ignored by git" >&2; exit 1; }
done
ls -l .whl/*.whl .data/mnist
changed=$(git status --porcelain --untracked-files=no)
[ -z "$changed" ] || printf 'NOTE: these uncommitted changes go with the checkout:\n%s\n' "$changed"

cat <<'NEXT'

Copy this checkout, .whl/ and .data/ included, to the machine with the NVIDIA GPU and run there:
  bash tools/gpu/run.sh OUT [BUDGET_S]
Rehearse it here on the CPU first:
  SOFTMAX_DEVICE=cpu SOFTMAX_REFERENCE_QUICK=1 bash tools/gpu/run.sh /tmp/rehearsal 120
NEXT
