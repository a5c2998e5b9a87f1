#!/usr/bin/env bash
# Wall time of configs/serve.yaml on this machine: the default target (its small offline grid, then
# serving) in an empty folder, then the serving figures of that run (each server's start and job
# time, each load point's measures, the harness cross-check).
#   bash bench/time_serve_run.sh [folder]
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
folder=${1:-$(mktemp -d -p /tmp serve-run.XXXX)}
mkdir -p "$folder"
snakemake=("$repo/.venv/bin/snakemake" --snakefile "$repo/Snakefile" --cores 2 --configfile "$repo/configs/serve.yaml")
TIMEFORMAT='%R'
whole=$( { time "${snakemake[@]}" --directory "$folder" > "$folder/run.log" 2>&1; } 2>&1 )
echo "configs/serve.yaml, default target (offline grid + serving), --cores 2: ${whole} s"
"$repo/.venv/bin/python" "$repo/bench/serve_figures.py" "$folder/results"
echo "(run kept in $folder, its log in $folder/run.log)"
