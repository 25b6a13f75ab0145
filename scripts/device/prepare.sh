#!/usr/bin/env bash
# Prepare a GPU run on the lent device machine (see scripts/device/README.md), HERE, at a
# clean commit: the wheels the device image lacks, the datasets the job list needs, and the
# commit the records will name (no .git travels). Everything goes into .device/ (ignored),
# which the run's `carry` names.
#
#   scripts/device/prepare.sh scripts/device/jobs/matchingnet_paper.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:?usage: prepare.sh JOBFILE}
[ -f "$jobs" ] || { echo "prepare.sh: no job file $jobs" >&2; exit 2; }
py=${PYTHON:-.venv/bin/python}
mirror=${SHORTSCI_MIRROR:-../shared/data}

# Records published from a device run must come from a clean checkout of a commit.
if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then
  echo "prepare.sh: the tree has uncommitted changes; commit (or stash) first: records name a commit" >&2
  exit 2
fi
rm -rf .device && mkdir -p .device/whl .device/data
git rev-parse HEAD > .device/COMMIT
cp "$jobs" .device/jobs.txt

# The device image (python 3.12) has torch and Lightning but not these: the venv's versions.
ver() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pkgs=(
  "hydra-core==$(ver hydra-core)" "omegaconf==$(ver omegaconf)"
  "pydantic==$(ver pydantic)" "pydantic_core==$(ver pydantic_core)"
  "annotated-types==$(ver annotated-types)" "typing-inspection==$(ver typing-inspection)"
  "typing_extensions==$(ver typing_extensions)"
  "gymnasium==$(ver gymnasium)" "farama-notifications==$(ver farama-notifications)"
)
plat=()
for n in 28 27 17; do plat+=(--platform "manylinux_2_${n}_x86_64"); done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" --platform manylinux2014_x86_64 -d .device/whl "${pkgs[@]}"
# antlr4's runtime has no wheel on PyPI: build one (pure Python)
"$py" -m pip wheel -q --no-deps -w .device/whl "antlr4-python3-runtime==$(ver antlr4-python3-runtime)"

# Only the datasets the jobs read (the tree travels with them: 64 MiB in all).
datasets=$(sed -n 's/^# datasets: *//p' "$jobs")
[ -n "$datasets" ] || { echo "prepare.sh: $jobs has no '# datasets: a,b' line" >&2; exit 2; }
cp "$mirror/SHA256SUMS" .device/data/
for d in ${datasets//,/ }; do cp -r "$mirror/$d" .device/data/; done
echo "$datasets" > .device/DATASETS
du -sh .device | sed 's/^/prepare.sh: carry /'
echo "prepare.sh: commit $(cat .device/COMMIT), jobs $(grep -cv '^#' .device/jobs.txt)"
