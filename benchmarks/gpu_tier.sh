#!/usr/bin/env bash
# The GPU tier of `hwquant bench reproduce` as one command of at most 9 minutes on one H100.
#
# Run from a fresh copy of the repository on a machine where nothing is installed but a Python
# with torch (CUDA), numpy, rich, matplotlib, pillow and scikit-learn: the device image has them,
# so hwquant runs from src/ (PYTHONPATH) and nothing is pip-installed or downloaded.
#
#   benchmarks/gpu_tier.sh
#
# Two invocations of the same run directory (rows are written as they finish; --resume skips them):
#   1. the tier's rows but the table units (FP32 baselines of ResNet-18 and VGG-Small, then LLSQ
#      W4A4 and W2A2 and MSQ W4A4 from each), then the FP32-vs-QAT step times (kept in
#      step_time.json);
#   2. the tier's rows (the 320-entry table units, whose engine runs on the CPU, are what is left).
# Each starts no model or row once its --stop-after budget is spent, and `timeout` ends it at
# the overall budget. results.json, results.md, step_time.json and the log are copied to $OUT
# (the device tool's return folder; set it to any folder elsewhere) after each invocation.
#
# Environment (all optional):
#   HWQUANT_DATA  CIFAR-10 JPEG tarball (default runs/cifar10-jpeg-q75.tar.gz, then
#                 ../shared/data/cifar10/cifar10-jpeg-q75.tar.gz); on the device machine copy the
#                 tarball into the ignored runs/ folder and carry runs/cifar10-jpeg-q75.tar.gz
#   TIER          gpu (default); smoke runs the same command path on a CPU in a few minutes
#   BUDGET_S      overall seconds (default 530); RESERVE1_S / RESERVE2_S: seconds kept after the
#                 last row of invocation 1 / 2 may start (default 200 / 120)
#   RUN_DIR       the run directory (default runs/reproduce-$TIER); PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

TIER=${TIER:-gpu}
BUDGET_S=${BUDGET_S:-530}
RESERVE1_S=${RESERVE1_S:-200}
RESERVE2_S=${RESERVE2_S:-120}
RUN_DIR=${RUN_DIR:-runs/reproduce-$TIER}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$RUN_DIR/out}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RUN_DIR" "$OUT"
LOG="$OUT/gpu_tier.log"
exec > >(tee -a "$LOG") 2>&1

data_args=()
for candidate in "${HWQUANT_DATA:-}" runs/cifar10-jpeg-q75.tar.gz \
    ../shared/data/cifar10/cifar10-jpeg-q75.tar.gz; do
    if [[ -n "$candidate" && -e "$candidate" ]]; then
        data_args=(--data-root "$candidate")
        break
    fi
done

collect() {
    for name in results.json results.md step_time.json; do
        if [[ -e "$RUN_DIR/$name" ]]; then cp "$RUN_DIR/$name" "$OUT/"; fi
    done
}
trap collect EXIT

start=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - start))); }

# reproduce RESERVE [ARGS...]: one invocation, ended by `timeout` at the overall budget.
reproduce() {
    local reserve=$1 remaining
    shift
    remaining=$(left)
    if ((remaining <= reserve)); then
        echo "gpu_tier: budget spent ($remaining s left), not starting: $*"
        return 0
    fi
    local status=0
    timeout --signal=INT --kill-after=15 "$remaining" "$PYTHON" -m hwquant bench reproduce \
        --tier "$TIER" --out "$RUN_DIR" --resume --progress --stop-after $((remaining - reserve)) \
        ${data_args[@]+"${data_args[@]}"} "$@" || status=$?
    collect
    echo "gpu_tier: invocation ended with status $status after $((SECONDS - start)) s: $*"
    return "$status"
}

"$PYTHON" - "$TIER" <<'EOF'
import platform, sys
import torch
from hwquant.schemes.tables import native
print(f"gpu_tier: tier {sys.argv[1]}; python {platform.python_version()}; torch {torch.__version__}"
      f"; cuda {torch.cuda.is_available()}"
      f" ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'})"
      f"; native table kernel: {native.unavailable_reason() or 'available'}")
EOF
core_rows=$("$PYTHON" -c "import sys; from hwquant.app.bench.rows import select_rows; \
print(' '.join(r.name for r in select_rows(None, sys.argv[1]) if r.kind != 'tables'))" "$TIER")

status=0
# shellcheck disable=SC2086  # core_rows is a list of row names
reproduce "$RESERVE1_S" --rows $core_rows || status=$?
reproduce "$RESERVE2_S" || status=$?
echo "gpu_tier: done in $((SECONDS - start)) s (status $status); results in $OUT"
exit "$status"
