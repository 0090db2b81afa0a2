#!/usr/bin/env bash
# Rehearses the GPU run of issue 12 on the CPU, from a fresh clone, as the device tool runs it:
#   1. git clone of this repository's HEAD into CLONE (default /tmp/rehearse);
#   2. tools/gpu/prepare.sh there (wheels into .whl/, MNIST and commit.txt into .data/);
#   3. a device-like Python (DEVPY, cached): the device image's packages that the project
#      needs, but not array-api-compat/-strict, which must come from .whl/ as on the device;
#   4. the tree that travels (tracked + untracked-not-ignored files + .whl + .data, no .git)
#      copied to CLONE-device, and tools/gpu/device-run.sh run there, SOFTMAX_DEVICE=cpu, in a
#      clean environment, with a fake $OUT;
#   5. the checks on $OUT that the device tool applies (<= 8 files, each <= 16 MiB, <= 2
#      folders deep, plain names) and on the archive (suite.json, every stage ok or skipped).
# Usage: bash tools/gpu/rehearse.sh [CLONE]     (SUITE_BUDGET_S=480 by default; REHEARSE_ENV
# adds variables to the clean environment, e.g. REHEARSE_ENV="OMP_NUM_THREADS=1" on a CPU that
# other processes load, where torch's two spinning threads make each epoch take seconds)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CLONE=${1:-/tmp/rehearse}
DEVPY=${DEVPY:-/tmp/softmax-devpy}
DEV=$CLONE-device
OUT=$CLONE-out
t0=$(date +%s)
rm -rf "$CLONE" "$DEV" "$OUT"
git clone -q "$SRC" "$CLONE"
cd "$CLONE"
echo "== clone of $(git rev-parse --short HEAD) in $CLONE"
PYTHON=${PYTHON:-$SRC/.venv/bin/python} bash tools/gpu/prepare.sh

if [ ! -x "$DEVPY/bin/python3" ]; then
  echo "== making the device-like Python $DEVPY (once)"
  python3 -m venv "$DEVPY"
  "$DEVPY/bin/pip" install -q numpy 'pandas<3' matplotlib psutil threadpoolctl tqdm tabulate pytest torch==2.13.0
fi
if "$DEVPY/bin/python3" -c "import array_api_compat" 2>/dev/null; then
  echo "rehearse: $DEVPY has array_api_compat: it must come from .whl as on the device" >&2; exit 1
fi

echo "== the tree that travels -> $DEV"
mkdir -p "$DEV"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -f "$f" ] && mkdir -p "$DEV/$(dirname "$f")" && cp -p "$f" "$DEV/$f"
done
cp -rp .whl .data "$DEV/"
du -sh "$DEV"

echo "== the device command, on the CPU"
mkdir -p "$OUT"
t1=$(date +%s)
set +e
(cd "$DEV" && env -i PATH="$DEVPY/bin:/usr/local/bin:/usr/bin:/bin" HOME="$DEV/.home" LANG=C.UTF-8 \
   OUT="$OUT" SOFTMAX_DEVICE=cpu SUITE_BUDGET_S="${SUITE_BUDGET_S:-480}" SUITE_SITE="$CLONE-site" \
   SUITE_WORK="$CLONE-work" ${REHEARSE_ENV:-} bash -c 'bash tools/gpu/device-run.sh')
rc=$?
set -e
t2=$(date +%s)
echo "== device-run.sh exit $rc after $((t2 - t1)) s"

echo "== what comes back"
"$DEVPY/bin/python3" - "$OUT" <<'PY'
import json, os, re, sys, tarfile
out = sys.argv[1]
files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
problems = []
if len(files) > 8:
    problems.append(f"{len(files)} files (at most 8 come back)")
for f in files:
    rel = os.path.relpath(f, out)
    size = os.path.getsize(f)
    print(f"  {rel}  {size / 2**20:.2f} MiB")
    if size > 16 * 2**20:
        problems.append(f"{rel} is over 16 MiB")
    if rel.count(os.sep) > 2 or not all(re.fullmatch(r"[A-Za-z0-9._-]+", p) for p in rel.split(os.sep)):
        problems.append(f"{rel}: too deep or an odd name")
archives = [f for f in files if f.endswith(".tar.gz")]
if len(archives) != 1:
    problems.append(f"expected one archive, found {len(archives)}")
else:
    with tarfile.open(archives[0]) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        suite = json.load(tar.extractfile(f"{top}/suite.json"))
    print(f"  archive: {len(names)} entries; suite wall {suite['wall_s']} s of {suite['budget_s']} s")
    for st in suite["stages"]:
        print(f"    {st['name']:<12} {st['status']:<8} {st['seconds']:>5.0f} s  load {st.get('load_1min')}  {st['detail'][:100]}")
        if st["status"] not in ("ok", "skipped"):
            problems.append(f"stage {st['name']}: {st['status']}")
    if suite["wall_s"] > suite["budget_s"] + 20:
        problems.append(f"the suite overran its budget: {suite['wall_s']} s")
print("REHEARSAL " + ("OK" if not problems else "FAILED: " + "; ".join(problems)))
sys.exit(1 if problems else 0)
PY
echo "== rehearsal took $(( $(date +%s) - t0 )) s in all"
