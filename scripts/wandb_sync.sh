#!/usr/bin/env bash
# Upload offline wandb runs once you are online and logged in (`wandb login`).
#   scripts/wandb_sync.sh [DIR ...]   (default: runs/ and ./wandb/, where `collect --wandb` writes)
# Uses the project's .venv when wandb is not on PATH, so no activated venv is needed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if command -v wandb >/dev/null 2>&1; then
  wandb=(wandb)
elif [ -x "$here/.venv/bin/wandb" ]; then
  wandb=("$here/.venv/bin/wandb")
else
  echo "wandb not found: run \`make install\` (it installs wandb into .venv) or activate your venv" >&2
  exit 2
fi
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(runs wandb)
found=0
for root in "${dirs[@]}"; do
  [ -d "$root" ] || continue
  while IFS= read -r -d '' d; do
    found=1
    echo "syncing $d"
    "${wandb[@]}" sync "$d"
  done < <(find "$root" -type d -name 'offline-run-*' -print0)
done
[ "$found" = 1 ] || echo "no offline wandb runs under ${dirs[*]}"
