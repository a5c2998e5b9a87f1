"""How much one batch's time varies around its trial's trend, from measured trial records: the
calibration of the rehearsal's per-batch noise (config key rehearsal.batch_noise_cv).

    .venv/bin/python bench/batch_noise.py [TRIALS_ROOT ...] [--out bench/output/batch_noise.csv]

TRIALS_ROOT defaults to results/trials (the default run's records). For every ok trial with at
least MIN_BATCHES full batches (a smaller last batch is left out), the trend of its log batch
latencies is a quadratic in the batch's index (the prompts come sorted by length, so later batches
take longer), fitted by least squares, then again without the batches more than 3 robust standard
deviations off it. The trial's spread is robust: sigma = 1.4826 x the median absolute deviation of
log(latency / trend), as a coefficient of variation sqrt(exp(sigma^2) - 1) (the rehearsal's noise
is lognormal). It leaves out the spikes of a shared machine (another process taking the cores for a
while), which say nothing of an engine on a dedicated GPU node; the plain figure, the standard
deviation of latency / trend - 1 with every batch, is printed beside it. Per engine: trials,
batches, the median robust CV over the trials (the rehearsal's default), its quartiles, and the
median plain CV.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

MIN_BATCHES = 8
COLUMNS = ["engine", "trials", "batches", "median_cv", "p25_cv", "p75_cv", "median_plain_cv", "source", "made"]
#: The median absolute deviation of a normal sample, in standard deviations.
MAD_TO_SIGMA = 1.4826


def latencies(record: dict) -> np.ndarray | None:
    """The trial's full batches' latencies, or None if it has too few (or is no measured ok trial)."""
    if record["status"] != "ok" or record.get("simulated"):
        return None
    found = np.asarray(record["timings"]["batch_latencies_s"], dtype=float)
    if record["counts"]["prompts"] % record["batch_size"]:
        found = found[:-1]  # the last batch is smaller
    return found if len(found) >= MIN_BATCHES else None


def spreads(found: np.ndarray) -> tuple[float, float]:
    """(robust CV, plain CV) of one trial's batch latencies around their trend."""
    index, logs = np.arange(len(found)), np.log(found)
    keep = np.ones(len(found), dtype=bool)
    for _ in range(2):  # fit, then fit again without the batches far off the first fit
        trend = np.polyval(np.polyfit(index[keep], logs[keep], 2), index)
        residual = logs - trend
        sigma = MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual)))
        keep = np.abs(residual) <= 3 * sigma if sigma > 0 else keep
    plain = np.std(found / np.exp(trend) - 1, ddof=3)
    return float(np.sqrt(np.expm1(sigma**2))), float(plain)


def calibrate(roots: list[Path]) -> list[dict]:
    by_engine: dict[str, list[tuple[int, float, float]]] = {}
    for root in roots:
        for path in sorted(root.rglob("b*_r*.json")):
            if "crosscheck" in path.parts or "bare" in path.parts:
                continue  # the cross-checks' own trials are not the sweeps'
            record = json.loads(path.read_text())
            found = latencies(record)
            if found is not None:
                by_engine.setdefault(record["engine"], []).append((len(found), *spreads(found)))
    made = datetime.now(UTC).date().isoformat()
    rows = []
    for engine, trials in sorted(by_engine.items()):
        robust, plain = np.array([t[1] for t in trials]), np.array([t[2] for t in trials])
        rows.append(
            {
                "engine": engine,
                "trials": len(trials),
                "batches": sum(t[0] for t in trials),
                "median_cv": round(float(np.median(robust)), 4),
                "p25_cv": round(float(np.percentile(robust, 25)), 4),
                "p75_cv": round(float(np.percentile(robust, 75)), 4),
                "median_plain_cv": round(float(np.median(plain)), 4),
                "source": " ".join(str(r) for r in roots),
                "made": made,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("results/trials")])
    parser.add_argument("--out", type=Path, default=Path("bench/output/batch_noise.csv"))
    args = parser.parse_args()
    rows = calibrate(args.roots)
    if not rows:
        sys.exit(f"no ok trial with {MIN_BATCHES} or more full batches under {', '.join(map(str, args.roots))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{'engine':8} {'trials':>6} {'batches':>8} {'median CV':>10} {'IQR':>13} {'median plain CV':>16}")
    for row in rows:
        iqr = f"{row['p25_cv']:.3f}-{row['p75_cv']:.3f}"
        print(
            f"{row['engine']:8} {row['trials']:>6} {row['batches']:>8} {row['median_cv']:>10.3f} {iqr:>13} "
            f"{row['median_plain_cv']:>16.3f}"
        )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
