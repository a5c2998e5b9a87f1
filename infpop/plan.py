"""The plan file: every (hardware, engine, model, n_gpus) combination, run or left out, and why."""

from __future__ import annotations

import csv
from pathlib import Path

from infpop.grid import plan, trial_keys

PLAN_COLUMNS = ["hardware", "engine", "model", "n_gpus", "planned", "n_trials", "reason"]


def plan_rows(config: dict) -> list[dict]:
    sweeps, excluded = plan(config)
    n_trials = len(trial_keys(config))
    rows = [dict(vars(s), planned="run", n_trials=n_trials, reason="") for s in sweeps]
    rows += [dict(row, planned="excluded", n_trials=0) for row in excluded]
    return sorted(rows, key=lambda r: (r["hardware"], r["engine"], r["model"], r["n_gpus"]))


def write_plan(config: dict, path: Path) -> list[dict]:
    rows = plan_rows(config)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PLAN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
