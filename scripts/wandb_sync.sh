#!/usr/bin/env bash
# Upload offline wandb runs once you are online and logged in (`wandb login`).
#   scripts/wandb_sync.sh [RUNS_DIR]     (default: runs/)
set -euo pipefail
runs=${1:-runs}
found=0
while IFS= read -r -d '' d; do
  found=1
  echo "syncing $d"
  wandb sync "$d"
done < <(find "$runs" -type d -name 'offline-run-*' -print0)
[ "$found" = 1 ] || echo "no offline wandb runs under $runs"
