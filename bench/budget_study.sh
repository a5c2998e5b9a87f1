#!/usr/bin/env bash
# The budget study (docs/budget.md) on the rehearsal of the paper's grid (configs/paper.yaml: 20
# models, A100 and V100, both engines, every GPU count), in an empty folder: each budget strategy
# alone and all combined over budget.study.seeds seeds (20) of the rehearsal's noise, against the
# paper's conclusion checks. Prints its wall time and the summary (median over seeds per strategy);
# the table is results/budget/study.csv, the figure results/budget/study.png.
#
#   bash bench/budget_study.sh [FOLDER]      (default: a new temporary folder)
#
# PAPER_DATA_DIR: the appendix files (default ../shared/data/infpop-appendix).
set -euo pipefail
work=${1:-$(mktemp -d)}
python=${PYTHON:-.venv/bin/python}
repo=$(pwd)
appendix=$(realpath "${PAPER_DATA_DIR:-../shared/data/infpop-appendix}")
echo "budget study in $work; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
# the target first: --configfile and --config take every word after them
"$python" -m snakemake --snakefile "$repo/Snakefile" --directory "$work" --cores 1 budget \
    --configfile "$repo/configs/paper.yaml" --config "paper_data={\"local_dir\": \"$appendix\"}" \
    > "$work/budget.log" 2>&1 || { tail -40 "$work/budget.log"; exit 1; }
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$work/results/budget/study.md"
