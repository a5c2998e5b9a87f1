"""The budget study's `sequential` and `combined` runs at several interval targets
(budget.sequential.ci_half_width_pct): which target reproduces the most conclusion checks within
the budget. The same code as the study (infpop.budget.study.run, its Checker and budget) on the
rehearsal of configs/paper.yaml, each seed's full run first (the reference and the budget's
base); only the sequential settings' target changes. The other strategies do not read it.

    python bench/sequential_target.py [--targets 5,2.5,2] [--seeds 0-20] [--out FILE]

Needs the paper's trials table (results/paper/trials.csv of a run of configs/paper.yaml, e.g.
the folder of bench/budget_study.sh) and the appendix in ../shared/data/infpop-appendix. Writes one
row per (target, strategy, seed) as it goes, then prints the medians over seeds. A seed takes
about 3 min per target on one core.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infpop import conclusions  # noqa: E402
from infpop.analysis.selection import AnalysisSettings, read_trials  # noqa: E402
from infpop.budget import study  # noqa: E402
from infpop.budget.strategies import STRATEGIES  # noqa: E402
from infpop.config import load_config  # noqa: E402

COLUMNS = ["target", "strategy", "seed", "fraction_of_full", "checks_passed", "checks_total"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="5,2.5,2", help="ci_half_width_pct values, comma-separated")
    parser.add_argument("--seeds", default="0-20", help="a range FIRST-END (END excluded)")
    parser.add_argument("--trials", default="results/paper/trials.csv", help="the paper's trials table")
    parser.add_argument("--appendix", default=str(REPO.parent / "shared/data/infpop-appendix"))
    parser.add_argument("--out", default=str(REPO / "bench/output/sequential_target.csv"))
    args = parser.parse_args()
    first, _, end = args.seeds.partition("-")
    seeds = range(int(first), int(end or int(first) + 1))
    targets = [float(t) for t in args.targets.split(",")]

    config = load_config(REPO / "configs/paper.yaml", overrides={"paper_data": {"local_dir": args.appendix}})
    table = Path(args.trials)
    # the analysis choices of the paper's data (rules/common/helpers.smk, dataset_analysis_settings)
    settings = AnalysisSettings(**{**config["analysis"], "duplicates": "last", "engine_settings": {}})
    statements = conclusions.read_statements(REPO / "configs/paper_reference.csv", REPO / "configs/paper_findings.csv")
    built = study.ConfigStudy(config, table)
    paper = conclusions.findings(read_trials(table), settings)
    plan = built.plan()
    runs = {"sequential": frozenset(["sequential"]), "combined": frozenset(STRATEGIES)}
    rows, checker, started = [], None, time.monotonic()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for seed in seeds:
            source = built.source(seed)
            full = dataclasses.replace(plan, strategies=frozenset(), budget_seconds=math.inf)
            reference = study.run(source, built.grid, full, built.estimate, seed)
            if checker is None:  # the full run's findings are the same whatever the seed
                found = conclusions.findings(study.dataset(reference), settings)
                checker = study.Checker(settings, statements, found, paper)
            budget = built.budget_seconds(reference.spent)
            for target in targets:
                stopping = dataclasses.replace(plan.stopping, ci_half_width_pct=target)
                for name, chosen in runs.items():
                    chosen_plan = dataclasses.replace(plan, strategies=chosen, budget_seconds=budget, stopping=stopping)
                    ledger = study.run(source, built.grid, chosen_plan, built.estimate, seed)
                    checks = checker.table(study.dataset(ledger))
                    row = {
                        "target": target,
                        "strategy": name,
                        "seed": seed,
                        "fraction_of_full": ledger.spent / reference.spent,
                        "checks_passed": study.Checker.reproduced(checks),
                        "checks_total": len(checks),
                    }
                    rows.append(row)
                    writer.writerow(row)
                    handle.flush()
                    print(
                        f"seed {seed} target {target:g}% {name}: {row['fraction_of_full']:.1%} of the full run, "
                        f"{row['checks_passed']}/{row['checks_total']} checks ({time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
    print(f"\nmedians over {len(seeds)} seeds (goal: at least 95% of the checks at no more than 10%):")
    for target in targets:
        for name in runs:
            mine = [r for r in rows if r["target"] == target and r["strategy"] == name]
            share = [r["checks_passed"] / r["checks_total"] for r in mine]
            fraction = statistics.median(r["fraction_of_full"] for r in mine)
            print(
                f"  {target:>4g}% {name:<10} {fraction:6.1%} of the device-hours, {statistics.median(share):6.1%} "
                f"of the checks (min {min(share):.1%}, max {max(share):.1%})"
            )


if __name__ == "__main__":
    main()
