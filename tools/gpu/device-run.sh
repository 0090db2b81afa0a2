#!/usr/bin/env bash
# The GPU run of issue 12 (Part 2): ONE call of the device tool, from the repository root,
#
#   run(command="bash tools/gpu/device-run.sh", carry=[".whl", ".data"], timeout_s=600)
#
# after tools/gpu/prepare.sh has filled .whl/ (the wheels the device image lacks) and
# .data/ (MNIST and the commit).  It installs the wheels as the device README says, runs
# `softmax-bench suite` within SUITE_BUDGET_S (480 s) and leaves two files in $OUT:
# suite-<device>.tar.gz (everything; < 16 MiB) and suite-<device>.log (the console).
# SUITE_ARGS adds options to the suite, e.g. a short second call on the still-warm machine:
#   run(command="SUITE_BUDGET_S=150 SUITE_ARGS='--skip tests,sweep' bash tools/gpu/device-run.sh", ...)
# tools/gpu/rehearse.sh runs this very script on the CPU with a fake $OUT.
set -u
cd "$(dirname "$0")/../.."
: "${OUT:?OUT is not set: the device tool sets it (tools/gpu/rehearse.sh fakes it)}"
DEVICE=${SOFTMAX_DEVICE:-gpu}
BUDGET=${SUITE_BUDGET_S:-480}
SITE=${SUITE_SITE:-/tmp/site}
WORK=${SUITE_WORK:-/tmp/softmax-bench-suite}
NAME=suite-$DEVICE
PY=python3
echo "[device-run] $(date -u +%FT%TZ) on $(uname -n): $($PY -V 2>&1) at $(command -v $PY); budget ${BUDGET} s"

# the wheels, exactly as the device README installs them
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
  && export PYTHONPATH=$SITE || { echo "[device-run] wheel install failed"; exit 3; }

export SOFTMAX_DEVICE=$DEVICE PYTHONUNBUFFERED=1 SOFTMAX_BENCH_COMMIT="$(cat .data/commit.txt 2>/dev/null)"
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
# what this Python has, first, so that a missing piece shows in the first lines of the tail
$PY - <<'PY'
import importlib
for m in ("numpy", "pandas", "matplotlib", "array_api_compat", "array_api_strict", "psutil", "threadpoolctl",
          "tqdm", "tabulate", "pytest", "torch", "cupy"):
    try:
        print(f"[device-run]   {m} {getattr(importlib.import_module(m), '__version__', '?')}")
    except Exception as exc:
        print(f"[device-run]   {m} NOT importable: {exc}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv

timeout -k 10 $((BUDGET + 60)) $PY -m softmax_core.cli suite --out "$WORK/$NAME" --budget "$BUDGET" \
  --data-dir .data/mnist --archive "$OUT/$NAME.tar.gz" ${SUITE_ARGS:-} 2>&1 | tee "$WORK/$NAME.log"
rc=${PIPESTATUS[0]}
if [ ! -s "$OUT/$NAME.tar.gz" ]; then
  echo "[device-run] the suite left no archive (exit $rc): archiving what is there"
  tar czf "$OUT/$NAME.tar.gz" -C "$WORK" .
fi
cp "$WORK/$NAME.log" "$OUT/$NAME.log"
echo "[device-run] exit $rc; in \$OUT:"; ls -l "$OUT"
exit "$rc"
