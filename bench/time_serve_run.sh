#!/usr/bin/env bash
# Wall time of configs/serve.yaml on this machine: the whole default target (its small offline grid,
# then serving), then the serving target alone in a fresh folder; then the serving figures.
#   bash bench/time_serve_run.sh [folder]
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
folder=${1:-$(mktemp -d -p /tmp serve-run.XXXX)}
snakemake=("$repo/.venv/bin/snakemake" --snakefile "$repo/Snakefile" --cores 2 --configfile "$repo/configs/serve.yaml")
TIMEFORMAT='%R'
whole=$( { time "${snakemake[@]}" --directory "$folder/all" > "$folder/all.log" 2>&1; } 2>&1 )
serving=$( { time "${snakemake[@]}" --directory "$folder/serving" serving > "$folder/serving.log" 2>&1; } 2>&1 )
echo "configs/serve.yaml, default target (offline grid + serving): ${whole} s"
echo "configs/serve.yaml, serving target only: ${serving} s"
"$repo/.venv/bin/python" "$repo/bench/serve_figures.py" "$folder/serving/results"
echo "(runs kept in $folder)"
