#!/usr/bin/env bash
# Prepares the GPU run of issue 12 (Part 2) here, where pip and the data are:
#   .whl/   the wheels the device image lacks (array-api-compat, array-api-strict), for
#           CPython 3.12 on x86-64, the versions this checkout's tests pass with;
#   .data/  MNIST (the four .gz IDX files) and commit.txt (the commit that travels);
# then checks that both are ignored by git, that what travels fits (64 MiB) and prints
# the one device call.  Both folders are ignored (.gitignore); the call carries them.
# Usage: bash tools/gpu/prepare.sh [MNIST_DIR]   (PYTHON=... picks the Python whose pip downloads)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
MNIST=${1:-${SOFTMAX_MNIST_DIR:-../shared/data/mnist}}
[ -d "$MNIST" ] || MNIST=/work/shared/data/mnist

# The device image ('cuda', KINDS.md) has numpy, pandas, matplotlib, psutil, threadpoolctl,
# tqdm, tabulate, pytest, torch and cupy-cuda13x; these two travel.
WHEELS="array-api-compat array-api-strict"
mkdir -p .whl .data/mnist
for name in $WHEELS; do
  version=$($PY -c "import importlib.metadata as m; print(m.version('$name'))")
  rm -f .whl/"$(echo "$name" | tr - _)"-*.whl           # one version of each: two stop the install
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$name==$version"
done
$PY - <<'PY'
import glob, zipfile
for w in sorted(glob.glob(".whl/*.whl")):
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        needs = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines()
                 if l.startswith("Requires-Dist:") and "extra ==" not in l]
    print(f"wheel {w[5:]}  needs: {', '.join(needs) or 'nothing'}")
PY

for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  cp -L "$MNIST/$f.gz" .data/mnist/
done
chmod -R u+w .data
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
changed=$(git status --porcelain --untracked-files=no 2>/dev/null || true)
if [ -n "$changed" ]; then
  commit="$commit+uncommitted-changes"
  echo "NOTE: the working tree travels as it is, these uncommitted changes included" \
       "(rehearse.sh rehearses HEAD):"
  echo "$changed" | sed 's/^/  /'
fi
echo "$commit" > .data/commit.txt

git check-ignore -q .whl/x && git check-ignore -q .data/x \
  || { echo "prepare: .whl/ and .data/ must be ignored (.gitignore)" >&2; exit 1; }

# what the device tool sends: tracked and untracked-not-ignored files, plus the carried folders
$PY - <<'PY'
import os, subprocess, sys
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.decode().split("\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = sum(os.path.getsize(os.path.join(d, f)) for top in (".whl", ".data")
              for d, _, fs in os.walk(top) for f in fs)
total = tree + carried
print(f"travels: working tree {tree / 2**20:.1f} MiB + carried .whl, .data {carried / 2**20:.1f} MiB "
      f"= {total / 2**20:.1f} MiB (limit 64 MiB)")
sys.exit(0 if total < 64 * 2**20 else 1)
PY

cat <<'CALL'

The device call (one command; tools/gpu/README-section.md says what to do before and after):
  run(command="bash tools/gpu/device-run.sh", carry=[".whl", ".data"], timeout_s=600)
It comes back as $OUT/suite-gpu.tar.gz and $OUT/suite-gpu.log (files_at in the reply).
Rehearse it on the CPU first: bash tools/gpu/rehearse.sh
CALL
