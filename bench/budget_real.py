"""A budgeted run against the full grid on real engines (issue 16, item 6): the config's grid
measured in full, measured in full again (what the noise alone changes), and measured by a
budgeted run (budget.run), each in a fresh folder, in rotated order per round; each trial once
(repetitions: 1, as the study's runs). Prints per run its device-hours (the trials' device-seconds
and the loads, from the sweep manifests), its share of the full run's, and the per-landscape
checks of the optimum (infpop.conclusions' relative rq1 checks: location within one grid step,
throughput within 5%, regret) against the first full run; writes output/budget_real.csv.

    python bench/budget_real.py --fraction 0.4 --strategies coarse_grid --rounds 1 --calibrate
    python bench/budget_real.py --config configs/smollm2.yaml --calibrate --output bench/output/budget_real_smollm2.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infpop import conclusions  # noqa: E402
from infpop.analysis.selection import AnalysisSettings, read_trials  # noqa: E402


def run(kind: str, folder: Path, configs: list[str], budget: dict, calibration: Path | None = None) -> float:
    """One run of the grid (the trials table only) in `folder`; its wall seconds (0: its table is
    there from an earlier call, kept)."""
    if (folder / "results/measured/trials.csv").exists():
        return 0.0
    overrides = ["repetitions=1"]
    if kind.startswith("budget"):
        overrides.append("budget=" + json.dumps(budget))
    if calibration is not None:  # the cost model fitted on earlier runs, in place of runtime_estimate's guesses
        unset = {"load_s": None, "trial_s": None}
        overrides.append(
            "runtime_estimate=" + json.dumps({"calibration": str(calibration), "hf": unset, "vllm": unset})
        )
    command = [
        sys.executable, "-m", "snakemake", "results/measured/trials.csv", "--cores", "2",
        "--directory", str(folder), *(["--configfile", *configs] if configs else []), "--config", *overrides,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    (folder / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"{kind} run failed; see {folder / 'run.log'}")
    return time.monotonic() - started


def device_hours(folder: Path) -> float:
    """The run's device-hours by the jobs' clocks: each sweep manifest's cost (loads included)."""
    manifests = folder.glob("results/trials/**/sweep.json")
    return sum(json.loads(p.read_text())["cost"]["device_seconds"] for p in manifests) / 3600


def checks(folder: Path, reference: conclusions.Findings, settings: AnalysisSettings) -> tuple[int, int, list[str]]:
    found = conclusions.findings(read_trials(folder / "results/measured/trials.csv"), settings)
    rows = conclusions.relative_checks(found, reference, "full", families=["rq1"])
    failed = [f"{r['check']} ({r['value']} vs {r['reference']})" for r in rows if not r["passed"]]
    return len(rows) - len(failed), len(rows), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="*", default=[], help="config files (default: config.yaml)")
    parser.add_argument("--fraction", type=float, default=0.4)
    parser.add_argument("--strategies", nargs="*", default=["coarse_grid"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPO / "bench/output/budget_real.csv")
    parser.add_argument("--directory", type=Path, default=Path("/tmp/infpop-budget-real"))
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="also a budgeted run whose cost model is fitted on the two full runs' trials (budget_cal)",
    )
    args = parser.parse_args()
    budget = {"run": True, "fraction": args.fraction, "strategies": args.strategies}
    configs = [str(Path(c).resolve()) for c in args.config]
    settings = AnalysisSettings(duplicates="mean")
    rows = []
    for r in range(args.rounds):
        kinds = ["full", "budget", "again"]
        kinds = kinds[r % 3 :] + kinds[: r % 3]
        walls = {}
        for kind in kinds:
            folder = args.directory / f"r{r}" / kind
            folder.mkdir(parents=True, exist_ok=True)
            print(f"round {r}: {kind} run in {folder}", flush=True)
            walls[kind] = run(kind, folder, configs, budget)
        full = args.directory / f"r{r}" / "full"
        measured = ["full", "again", "budget"]
        if args.calibrate:  # fitted on both full runs: what a user has after an earlier run
            calibration = args.directory / f"r{r}" / "calibration.csv"
            tables = [args.directory / f"r{r}" / k / "results/measured/trials.csv" for k in ("full", "again")]
            lines = [t.read_text().splitlines() for t in tables]
            calibration.write_text("\n".join(lines[0] + lines[1][1:]) + "\n")
            folder = args.directory / f"r{r}" / "budget_cal"
            folder.mkdir(parents=True, exist_ok=True)
            print(f"round {r}: budget_cal run in {folder}", flush=True)
            walls["budget_cal"] = run("budget_cal", folder, configs, budget, calibration)
            measured.append("budget_cal")
        reference = conclusions.findings(read_trials(full / "results/measured/trials.csv"), settings)
        full_hours = device_hours(full)
        for kind in measured:
            folder = args.directory / f"r{r}" / kind
            passed, total, failed = checks(folder, reference, settings)
            hours = device_hours(folder)
            trials = sum(1 for _ in csv.DictReader(open(folder / "results/measured/trials.csv")))
            rows.append(
                {
                    "round": r,
                    "run": kind,
                    "trials": trials,
                    "device_hours": round(hours, 4),
                    "fraction_of_full": round(hours / full_hours, 3),
                    "wall_s": round(walls[kind]),
                    "checks_passed": passed,
                    "checks_total": total,
                    "failed": "; ".join(failed),
                }
            )
            print(
                f"round {r} {kind:>6}: {trials} trials, {hours:.4f} device-hours ({hours / full_hours:.0%} of full), "
                f"{passed}/{total} landscape checks" + (f"; failed: {'; '.join(failed)}" if failed else ""),
                flush=True,
            )
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
