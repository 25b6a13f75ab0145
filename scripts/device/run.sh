#!/usr/bin/env bash
# On the lent GPU machine (the `device` tool's run, carry [".device"]), in the copied tree:
# install the carried wheels, unpack the carried datasets, run every job of .device/jobs.txt,
# PARALLEL at a time on the one GPU (the models are small: one alone leaves it mostly idle),
# each stopped with SIGTERM after BUDGET seconds (an interrupted run writes its record and a
# checkpoint; rerunning resumes it), and pack the records into $OUT.
#
#   bash scripts/device/run.sh [PARALLEL=8] [BUDGET_S=480]
# Here, on a CPU, for a test: OUT=/tmp/out DEVICE_SITE=none bash scripts/device/run.sh 2 60
set -uo pipefail
cd "$(dirname "$0")/../.."
parallel=${1:-8}
budget=${2:-480}
out=${OUT:?OUT must name the folder whose files come back}
dev=${DEVICE_DIR:-.device}  # what prepare.sh made (another folder only for tests)
[ -f "$dev/COMMIT" ] || { echo "run.sh: no .device/COMMIT: run scripts/device/prepare.sh here first and carry .device" >&2; exit 2; }
site=${DEVICE_SITE:-/tmp/site}
if [ "$site" != none ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" "$dev"/whl/*.whl || exit 1
  export PYTHONPATH="$site:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
py=${PYTHON:-python3}
# inside the checkout, ignored: a warm machine keeps it between calls, so a second call resumes
work=${DEVICE_WORK:-$PWD/.devwork}
mkdir -p "$work/logs"
summary="$work/logs/summary-$(date +%Y%m%d-%H%M%S).txt"  # this call's; earlier calls keep theirs
export SHORTSCI_MIRROR="$(cd "$dev" && pwd)/data" SHORTSCI_DATA="$work/data" SHORTSCI_RUNS="$work/runs"
export SHORTSCI_GIT_COMMIT="$(cat "$dev/COMMIT")" WANDB_MODE=disabled PYTHONUNBUFFERED=1
t0=$(date +%s)
"$py" -m shortsci_bench.data.mirror --root "$SHORTSCI_DATA" --only "$(cat "$dev/DATASETS")" || exit 1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null | tee "$work/logs/gpu.txt"

# One job a line: the arguments of `python -m shortsci_bench` (comments and blanks skipped).
grep -v '^\s*#' "$dev/jobs.txt" | grep -v '^\s*$' | nl -w3 -s' ' > "$work/jobs.txt"
run_job() {
  local n=$1; shift
  timeout -s TERM -k 30 "$budget" "$py" -m shortsci_bench "$@" threads=2 \
    > "$work/logs/job$n.log" 2>&1
  local rc=$? how
  case $rc in
    0) how="exit 0" ;;
    124|137) how="stopped at the ${budget} s budget (interrupted record and checkpoint: the same command resumes it)" ;;
    *) how="exit $rc (see logs/job$n.log)" ;;
  esac
  echo "job $n $how after $(( $(date +%s) - t0 )) s: $*" | tee -a "$summary"
}
export -f run_job; export py budget work t0 summary
xargs -P "$parallel" -L 1 bash -c 'run_job "$@"' _ < "$work/jobs.txt"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null >> "$work/logs/gpu.txt"

# Records back: result.json, config.yaml and the metric logs of every run (no checkpoints).
mkdir -p "$out"
(cd "$work/runs" && find . -path '*/.hydra' -prune -o \( -name result.json -o -name config.yaml \
  -o -name 'metrics*.csv' \) -print | tar -czf "$out/records.tar.gz" -T -)
tar -czf "$out/logs.tar.gz" -C "$work" logs jobs.txt
cp "$summary" "$out/summary.txt" 2>/dev/null
ls -la "$out"
echo "run.sh: $(grep -c ' exit 0 ' "$summary" 2>/dev/null || echo 0) of $(wc -l < "$work/jobs.txt") jobs exited 0 in $(( $(date +%s) - t0 )) s"
