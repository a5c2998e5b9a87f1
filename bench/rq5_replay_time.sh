#!/usr/bin/env bash
# The RQ5 replay against the appendix's own script (scripts/hpo_infpop.py of UPCBarcelonaTech/infpop
# at 1b4908c), side by side on the same machine: ours, the appendix's, ours, ours.
#
#   bash bench/rq5_replay_time.sh PATH/TO/hpo_infpop.py [results/paper/trials.csv]
#
# The appendix script is not part of this repository: pass a copy of it. It reads ../allData.csv
# with a hardware column (a100/tesla) and model names with an organisation prefix; this script
# writes that file from our import of the published data (its 5-token rows: every best-on-old and
# baseline figure in the appendix's RQ5 results is a 5-token row). /usr/bin/time -v gives the
# wall time and peak memory of each whole process.
set -euo pipefail
script=${1:?path to the appendix script hpo_infpop.py}
trials=${2:-results/paper/trials.csv}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
mkdir -p "$work/scripts"
cp "$script" "$work/scripts/hpo_infpop.py"
"$python" - "$trials" "$work/allData.csv" <<'PY'
import sys
import pandas as pd
t = pd.read_csv(sys.argv[1])
t = t[t["max_new_tokens"] == 5]
pd.DataFrame({
    "model": "org_" + t["model"],  # the script keeps what follows the first "_"
    "engine": t["engine"].map({"hf": "autohf", "vllm": "vLLM"}),
    "nrGPUs": t["n_gpus"], "batchSize": t["batch_size"], "throughput": t["throughput_tokens_per_s"],
    "hardware": t["hardware"].map({"a100": "a100", "v100": "tesla"}),
}).to_csv(sys.argv[2])
PY
here=$(pwd)
ours() { /usr/bin/time -f "ours: wall %e s, peak RSS %M KiB" "$python" bench/rq5_replay.py "$trials" 2 2>&1 | tail -3; }
appendix() {
  (cd "$work/scripts" && /usr/bin/time -f "appendix: wall %e s, peak RSS %M KiB" "$here/$python" hpo_infpop.py \
     > "$work/appendix.log" 2>&1; tail -1 "$work/appendix.log")
  grep "End- summary" -A1 "$work/appendix.log" | grep -o "summaryMedianMedian: [0-9.]* summaryMedianMean [0-9.]*" || true
}
ours; appendix; ours; ours
rm -rf "$work"
