#!/usr/bin/env bash
# tools/reference-set.sh OUT [BUDGET_S]: the reference set on this machine's device (SOFTMAX_DEVICE)
# within BUDGET_S seconds (default 480), into the new folder OUT, then OUT.tar.gz beside it. Each
# stage runs under `timeout` with a share of the budget, the sweep with what is left. OUT/summary.md
# gives each stage's status and seconds; the exit status is 1 if one failed or timed out.
set -u
die() { echo "reference-set: $*" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && -n ${1%/} ]] || die "usage: tools/reference-set.sh OUT [BUDGET_S]"
OUT=${1%/} BUDGET=${2:-480}
[[ $BUDGET =~ ^[1-9][0-9]*$ ]] || die "BUDGET_S must be a whole number of seconds, got '$BUDGET'"
[ -z "$(ls -A "$OUT" 2>/dev/null)" ] || die "$OUT exists and is not empty: choose a new OUT"
[ ! -e "$OUT.tar.gz" ] || die "$OUT.tar.gz exists: choose a new OUT"
mkdir -p "$OUT" || die "cannot make the folder $OUT"
OUT=$(cd "$OUT" && pwd) ROOT=$(cd "$(dirname "$0")/.." && pwd)
# MNIST: $SOFTMAX_DATA_DIR, else .data/mnist, else ../shared/data/mnist
MNIST=${SOFTMAX_DATA_DIR:-$ROOT/.data/mnist}
[ -d "$MNIST" ] || [ -n "${SOFTMAX_DATA_DIR:-}" ] || MNIST=$ROOT/../shared/data/mnist
if [ -d "$MNIST" ]; then MNIST=$(cd "$MNIST" && pwd); else MNIST=''; fi
cd "$ROOT" || exit 2
# the commands: $SOFTMAX_BENCH, else softmax-bench on PATH, else $PYTHON -m softmax_core.cli
PY=${PYTHON:-python3} BENCH=(softmax-bench)
command -v softmax-bench >/dev/null || BENCH=("$PY" -m softmax_core.cli)
[ -z "${SOFTMAX_BENCH:-}" ] || read -ra BENCH <<<"$SOFTMAX_BENCH"
# SOFTMAX_REFERENCE_QUICK=1: a smoke test (a tiny sweep, 1 epoch, side by side --quick, no pytest)
QUICK='' EPOCHS=10 DEADLINE=$((SECONDS + BUDGET)) RESERVE=10 ROWS='' BAD=''
[ "${SOFTMAX_REFERENCE_QUICK:-0}" = 0 ] || QUICK=1 EPOCHS=1

# cap PCT MIN MAX: PCT % of the budget, at least MIN and at most MAX seconds, and never past the
# deadline less RESERVE (the seconds kept back for the report, summary.md and the archive)
cap() {
  local c=$((BUDGET * $1 / 100)) left=$((DEADLINE - RESERVE - SECONDS))
  c=$((c < $2 ? $2 : c > $3 ? $3 : c))
  echo $((c < left ? c : left))
}
# stage NAME CAP_S FILE CMD...: CMD under `timeout`, its stdout into OUT/FILE and its stderr into
# OUT/NAME.log; sets STATUS and WHY, and succeeds if CMD did
stage() {
  local name=$1 cap=$2 file=$3 rc && shift 3
  if ((cap < 2)); then STATUS=skipped WHY="no time left in the budget"; return 1; fi
  echo "[reference-set] $name, at most $cap s: $*" >&2
  timeout -k 5 "$cap" "$@" >>"$OUT/$file" 2>>"$OUT/$name.log" || rc=$?
  case ${rc:-0} in
    0) STATUS=ok WHY=''; return 0 ;;
    124 | 137) STATUS=timeout WHY="stopped at its deadline of $cap s" ;;
    *) STATUS=failed WHY="exit $rc: $(cat "$OUT/$file" "$OUT/$name.log" | grep . | tail -n 1)" ;;
  esac
  return 1
}
# record NAME: a row of summary.md: STATUS, seconds since T0, the load average (others' too), WHY
record() {
  local s=$((SECONDS - T0))
  echo "[reference-set] $1: $STATUS in $s s${WHY:+: $WHY}" >&2
  ROWS+="| $1 | $STATUS | $s | $(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null) | ${WHY//|//} |"$'\n'
  case $STATUS in failed | timeout) BAD+=" $1" ;; esac
}
RESERVE=$((10 + $(cap 8 30 60))) # the report's share, then 10 s

T0=$SECONDS
stage environment "$(cap 5 20 40)" info.json "${BENCH[@]}" info --json && WHY=info.json
command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 &&
  WHY+="${WHY:+, }nvidia-smi.txt"
record environment

T0=$SECONDS
if [ -n "$QUICK" ]; then STATUS=skipped WHY="SOFTMAX_REFERENCE_QUICK is set"
elif [ ! -d tests ]; then STATUS=skipped WHY="no tests/ beside tools/"
# in one process (-o addopts= drops pyproject's -n auto): the tests that time the device share it
# with no other test, and pytest-xdist need not be installed
elif stage tests "$(cap 20 30 150)" tests.log env SOFTMAX_MNIST_DIR="$MNIST" "$PY" -m pytest -q \
  -o addopts= -m "not slow" -p no:cacheprovider tests/test_backend.py tests/test_model.py \
  tests/test_measure.py tests/test_sidebyside.py; then
  WHY=$(grep . "$OUT/tests.log" | tail -n 1)
fi
record tests

# train NAME [ARGS...]: the MNIST recipe, its epochs into OUT/NAME.csv; the last test error must be
# 7.97 %, 797 of 10 000 images, give or take 3 (float32 sums in another order flip one or two)
train() {
  local name=$1 && shift && T0=$SECONDS
  if [ -z "$MNIST" ]; then STATUS=skipped WHY="no MNIST folder: set SOFTMAX_DATA_DIR"
  elif stage "$name" "$(cap 10 30 90)" "$name.log" "${BENCH[@]}" train --data-dir "$MNIST" \
    --epochs "$EPOCHS" --lr 0.2 --batch 100 --dtype float32 --metrics-out "$OUT/$name.csv" "$@" &&
    ! WHY=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "test_err") c = i }
      END { off = sprintf("%.0f", $c * 10000) - 797
            printf "test error %.2f%%: %+d images against 7.97%%", $c * 100, off
            exit (off < -3 || off > 3) }' "$OUT/$name.csv"); then
    if [ -n "$QUICK" ]; then WHY+=" (quick: not checked)"; else STATUS=failed; fi
  fi
  record "$name"
}
train train
if "$PY" -c "import torch" 2>/dev/null; then train train-torch --backend torch
else T0=$SECONDS STATUS=skipped WHY="torch does not import in $PY" && record train-torch; fi

T0=$SECONDS
c=$(cap 25 30 150)
if [ -n "$QUICK" ]; then SBS=(--quick --time-budget 2); else SBS=(--data-dir "$MNIST"); fi
if [ -z "$QUICK$MNIST" ]; then STATUS=skipped WHY="no MNIST folder: set SOFTMAX_DATA_DIR"
elif stage sidebyside "$c" sidebyside.log "${BENCH[@]}" sidebyside --out "$OUT/sidebyside" \
  --time-budget $((c * 6 / 10 + 1)) "${SBS[@]}"; then
  WHY=sidebyside/sidebyside.md
  grep -q '"agrees": false' "$OUT"/sidebyside/*.json && STATUS=failed WHY+=": they disagree"
fi
record sidebyside

T0=$SECONDS
room=$((DEADLINE - RESERVE - SECONDS))
# seconds per point: the default grid's wall time is about 12 s per second of --time-budget,
# plus 35 s, on 2 cores
T=$(awk -v s="$room" 'BEGIN { t = (s - 35) / 12; t = t < 0.5 ? 0.5 : t > 20 ? 20 : t
  printf "%.2f", t }')
GRID=(--methods "structured,naive,naive_batched" --batch "1,8,32,96,256,1024") PAST1=8,32,96,256,1024
[ -z "$QUICK" ] || GRID=(--methods "structured,naive,naive_batched" --batch "1,32" --classes 10
  --features 784 --epochs-on none) PAST1=32
SWEEP=("${BENCH[@]}" sweep --out "$OUT/sweep" --time-budget "$T" --no-report --no-progress)
# the structured points past B = 1 first (the later options win), then --resume with the whole
# grid (given in full: a resume measures the grid its run began with, less the options given),
# whose last point is the B = 1 epoch (60 000 steps): a pass stopped early loses only its own
if stage sweep $((room * 45 / 100)) sweep.log "${SWEEP[@]}" "${GRID[@]}" --methods structured \
  --batch "$PAST1" || [ "$STATUS" = timeout ]; then
  stage sweep $((DEADLINE - RESERVE - SECONDS)) sweep.log "${SWEEP[@]}" "${GRID[@]}" --resume
fi
WHY="--time-budget $T s for $room s${WHY:+; $WHY}"
record sweep

T0=$SECONDS RESERVE=10
if [ ! -f "$OUT/sweep/results.csv" ]; then STATUS=skipped WHY="no sweep results"
elif stage report "$(cap 8 30 60)" report.log "${BENCH[@]}" report "$OUT/sweep"; then
  WHY=sweep/report.md
fi
record report

VERDICT=${BAD:+NOT ok:}${BAD:-all stages ok or skipped}
{
  printf '# Reference set\n\n%s, %s, SOFTMAX_DEVICE=%s: %s s of a %s s budget; %s.\n\n' \
    "$(date -u +%FT%TZ)" "$(uname -n)" "${SOFTMAX_DEVICE:-cpu}" "$SECONDS" "$BUDGET" "$VERDICT"
  printf '| stage | status | s | load | detail |\n| --- | --- | --- | --- | --- |\n%s' "$ROWS"
} >"$OUT/summary.md"
(set -C && tar -czf - -C "$(dirname "$OUT")" "$(basename "$OUT")" >"$OUT.tar.gz") ||
  { echo "reference-set: could not write $OUT.tar.gz" >&2; exit 1; }
echo "[reference-set] $OUT.tar.gz: $VERDICT" >&2
[ -z "$BAD" ] || exit 1
