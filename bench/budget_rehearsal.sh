#!/usr/bin/env bash
# The paper's grid rehearsed as a budgeted run (budget.run) through the workflow, in an empty
# folder: the budgeted jobs, aggregation and the conclusion checks of the rehearsal's dataset;
# prints the wall time, each job's ledger (trials, device-hours spent of its share, its clock's)
# and the checks reproduced (passed or explained) of the 421.
#
#   bash bench/budget_rehearsal.sh BUDGET [FOLDER]
#   bash bench/budget_rehearsal.sh '{"device_hours": 1038, "strategies": ["oom_bisection", "coarse_grid"]}'
#
# BUDGET: the budget section's keys as JSON (run: true is added). PAPER_DATA_DIR: the appendix
# files (default ../shared/data/infpop-appendix).
set -euo pipefail
budget=${1:?usage: bash bench/budget_rehearsal.sh BUDGET_JSON [FOLDER]}
work=${2:-$(mktemp -d)}
python=${PYTHON:-.venv/bin/python}
repo=$(pwd)
appendix=$(realpath "${PAPER_DATA_DIR:-../shared/data/infpop-appendix}")
section=$("$python" -c 'import json, sys; print(json.dumps({**json.loads(sys.argv[1]), "run": True}))' "$budget")
echo "budgeted rehearsal in $work: budget $section; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s.%N)
"$python" -m snakemake results/rehearsal/conclusions.csv --snakefile "$repo/Snakefile" --directory "$work" \
    --cores 2 --configfile "$repo/configs/paper.yaml" "$repo/configs/rehearsal.yaml" \
    --config "paper_data={\"local_dir\": \"$appendix\"}" "budget=$section" > "$work/run.log" 2>&1 \
    || { tail -40 "$work/run.log"; exit 1; }
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"
grep "InfPop budgeted run:" "$work/run.log"
"$python" - "$work/results/rehearsal" <<'PY'
import csv, json, sys
from pathlib import Path

own = Path(sys.argv[1])
spent = clock = 0.0
for path in sorted(own.glob("trials/*/*/budget.json")):
    ledger = json.loads(path.read_text())
    spent, clock = spent + ledger["spent_device_hours"], clock + ledger["job_device_hours"]
    print(
        f"{ledger['hardware']}/{ledger['engine']}: {ledger['stopped']}, {len(ledger['trials'])} trials, "
        f"{ledger['spent_device_hours']:,.1f} of {ledger['budget_device_hours']:,.1f} device-hours "
        f"({ledger['job_device_hours']:,.1f} by the job's clock, {ledger['model_loads']} loads)"
    )
rows = list(csv.DictReader(open(own / "conclusions.csv")))
statuses = [r["status"] for r in rows]
reproduced = sum(s in ("passed", "explained") for s in statuses)
print(f"spent {spent:,.1f} device-hours ({clock:,.1f} by the jobs' clocks)")
print(f"checks reproduced: {reproduced} / {len(rows)} ({reproduced / len(rows):.1%}); "
      + ", ".join(f"{s} {statuses.count(s)}" for s in sorted(set(statuses))))
PY
