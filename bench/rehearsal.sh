#!/usr/bin/env bash
# The paper's whole grid rehearsed (configs/paper.yaml + configs/rehearsal.yaml: 20 models, A100 and
# V100, both engines, every GPU count; 320 sweeps in 390 jobs) through the workflow in an empty
# folder, timed in two parts (the measurements: plan, sweeps, aggregation, repetitions, provenance;
# then everything else: both datasets' RQ1-RQ5, live tuning, the comparison, the report), then the
# rehearsal's RQ tables compared with the replay's (infpop/analysis/two_paths.py) and what the
# simulated trials cost.
#
#   bash bench/rehearsal.sh [CORES] [FOLDER]      (defaults: 2 cores, a new temporary folder)
#
# PAPER_DATA_DIR: the appendix files (default ../shared/data/infpop-appendix).
set -euo pipefail
cores=${1:-2}
work=${2:-$(mktemp -d)}
python=${PYTHON:-.venv/bin/python}
repo=$(pwd)
appendix=$(realpath "${PAPER_DATA_DIR:-../shared/data/infpop-appendix}")
run() {
    # the targets first: --configfile and --config take every word after them
    "$python" -m snakemake --snakefile "$repo/Snakefile" --directory "$work" --cores "$cores" "$@" \
        --configfile "$repo/configs/paper.yaml" "$repo/configs/rehearsal.yaml" \
        --config "paper_data={\"local_dir\": \"$appendix\"}"
}
echo "rehearsal in $work on $cores core(s); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for part in measure all; do
    start=$(date +%s.%N)
    run "$part" > "$work/$part.log" 2>&1 || { tail -40 "$work/$part.log"; exit 1; }
    echo "$part: $(echo "$(date +%s.%N) - $start" | bc) s wall"
done
"$python" - "$work/results" <<'PY'
import json
import sys
from pathlib import Path

import pandas as pd

from infpop.analysis.two_paths import compare, describe

results = Path(sys.argv[1])
own = results / "rehearsal"
trials = pd.read_csv(own / "trials.csv")
manifests = [json.loads(p.read_text()) for p in (own / "trials").rglob("sweep*.json")]
print(f"{len(manifests)} sweep jobs, {len(trials):,} trials: {trials['status'].value_counts().to_dict()}")
loads = sum(m["model_loads"] for m in manifests)
print(f"model loads {loads} (simulated {sum(m['cost']['load_seconds'] for m in manifests) / 3600:,.1f} h)")
jobs = sum(m["cost"]["device_seconds"] for m in manifests) / 3600
ok = trials[trials["status"] == "ok"]
by = (ok.groupby(["engine", "hardware"])["device_seconds"].sum() / 3600).round(0).to_dict()
print(f"simulated device-hours: jobs (loads, warm-ups, trials) {jobs:,.0f}; ok trials {ok['device_seconds'].sum() / 3600:,.0f} {by}")
print(f"real wall of the sweep jobs (their manifests): {sum(m['wall_seconds'] for m in manifests):,.0f} s")
found = compare(own, results / "paper", ["a100", "v100"])
print(describe(found))
print(f"{sum(not d for d in found.values())} of {len(found)} tables equal")
PY
