#!/usr/bin/env bash
# Here, after a device run: unpack the records it sent back into runs/device-<time>/, where
# `python -m shortsci_bench.collect` reads them (SHORTSCI_RUNS), and show their verdicts.
#
#   scripts/device/fetch.sh /work/.device/<the run's files_at folder>
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:?usage: fetch.sh FILES_AT}
dest=runs/device-$(date +%Y%m%d-%H%M%S)
mkdir -p "$dest"
tar -xzf "$src/records.tar.gz" -C "$dest"
[ -f "$src/summary.txt" ] && cat "$src/summary.txt"
echo "fetch.sh: $(find "$dest" -name result.json | wc -l) records in $dest"
echo "verdicts: SHORTSCI_RUNS=$dest .venv/bin/python -m shortsci_bench.collect --runs-only"
