#!/usr/bin/env bash
# Wall time of the README's run command (`make run`) in a fresh clone beside this repository
# (so ../shared is found): first with the setup included (no .venv yet), then with the setup
# excluded (the .venv kept, every output removed). Then the harness figures of the last run.
#   bash bench/time_default_run.sh
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
clone=$(mktemp -d -p "$(dirname "$repo")" bench-run.XXXX)
git clone -q "$repo" "$clone"
cd "$clone"
TIMEFORMAT='%R'
included=$( { time make run > run-setup.log 2>&1; } 2>&1 )
rm -rf results resources .snakemake
excluded=$( { time make run > run.log 2>&1; } 2>&1 )
echo "make run, setup included: ${included} s"
echo "make run, setup excluded: ${excluded} s"
.venv/bin/python bench/harness_figures.py results
echo "(clone kept in $clone)"
