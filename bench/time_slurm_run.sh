#!/usr/bin/env bash
# Wall time of the reduced grid of tests/test_slurm.py (tiny model, both engines, batch sizes 1 and
# 8, one repetition, 64 prompts, no replay, live tuning with a budget of 2) through profiles/slurm on a running one-node SLURM
# (.ci/slurm-up.sh, with the CI overrides), then the same grid locally with --cores 2; each in a
# fresh folder, one after the other. Prints both wall times and each sweep's job time.
#   bash bench/time_slurm_run.sh [work folder, default: a new temporary folder]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
snakemake=("$repo/.venv/bin/python" -m snakemake --snakefile "$repo/Snakefile")
[ "$(sinfo -h -o %t 2>/dev/null)" = idle ] || { echo "no idle SLURM node: run .ci/slurm-up.sh first" >&2; exit 1; }

mkdir -p "$work/slurm" "$work/local"
"$repo/.venv/bin/python" - "$repo/config.yaml" "$work" "$repo/tests/slurm/partitions.yaml" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config.update(batch_sizes=[1, 8], repetitions=1, benchmark={"limit": 64}, paper_data={"replay": False})
config["optimise"] = {"tune": {"budget": 2, "batch_sizes": [16, 32]}, "study": {"seeds": 2}}  # as the test
config["crosscheck"] = {"repeats": 1}
config["cluster"] = {"partitions": sys.argv[3]}
for where in ("slurm", "local"):
    yaml.safe_dump(config, open(f"{sys.argv[2]}/{where}/reduced.yaml", "w"), sort_keys=False)
PY

ms() { echo $(( $(date +%s%N) / 1000000 )); }
start=$(ms)
(cd "$work/slurm" && "${snakemake[@]}" --profile "$repo/profiles/slurm" \
    --slurm-no-account \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 --set-threads sweep=2 optimise_tune=2 crosscheck=2 \
    --configfile reduced.yaml > run.log 2>&1)
slurm_ms=$(( $(ms) - start ))
start=$(ms)
(cd "$work/local" && "${snakemake[@]}" --cores 2 --configfile reduced.yaml > run.log 2>&1)
local_ms=$(( $(ms) - start ))

for where in slurm local; do
    echo "$where: $(grep -c 'submitted with SLURM jobid' "$work/$where/run.log" || true) SLURM job(s)"
    for tsv in $(cd "$work/$where/results/benchmarks/sweep" && find . -name '*.tsv' | sort); do
        echo "  sweep ${tsv#./}: $(tail -n 1 "$work/$where/results/benchmarks/sweep/$tsv" | cut -f1) s"
    done
done
echo "wall: SLURM $((slurm_ms / 1000)).$((slurm_ms % 1000 / 100)) s, local $((local_ms / 1000)).$((local_ms % 1000 / 100)) s ($work)"
