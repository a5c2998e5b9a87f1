"""Figures of a finished run: per sweep the model loads and the harness overhead, and the
throughput at each batch size per engine (median over repetitions).

    python bench/harness_figures.py [results]

Harness overhead = the sweep job's wall time (Snakemake's benchmark file: process start, imports,
worker, warm-up, writing records) / (one model load + the sum of the timed generation).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(results: Path) -> None:
    print(f"{'sweep':<28} {'loads':>5} {'job wall s':>10} {'load s':>7} {'gen s':>7} {'overhead':>8}")
    for manifest in sorted((results / "trials").rglob("sweep.json")):
        summary = json.loads(manifest.read_text())
        name = f"{summary['hardware']}/{summary['engine']}/{summary['model']}/g{summary['n_gpus']}"
        bench = results / "benchmarks" / "sweep" / f"{name}.tsv"
        with open(bench) as handle:
            job_wall = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
        load = summary["load_seconds"][0] if summary["load_seconds"] else 0.0
        work = load + summary["generation_seconds"]
        print(
            f"{name:<28} {summary['model_loads']:>5} {job_wall:>10.1f} {load:>7.1f} "
            f"{summary['generation_seconds']:>7.1f} {job_wall / work if work else float('nan'):>8.2f}"
        )

    rates = defaultdict(list)
    with open(results / "measured" / "trials.csv") as handle:
        for row in csv.DictReader(handle):
            if row["status"] == "ok":
                rates[(row["engine"], int(row["n_gpus"]), int(row["batch_size"]))].append(
                    float(row["throughput_tokens_per_s"])
                )
    batches = sorted({key[2] for key in rates})
    print("\nthroughput, tokens/s (median of repetitions)")
    print(f"{'engine':<10}" + "".join(f"{'b' + str(b):>9}" for b in batches))
    for engine, n_gpus in sorted({key[:2] for key in rates}):
        cells = [rates.get((engine, n_gpus, b)) for b in batches]
        print(
            f"{engine + ' g' + str(n_gpus):<10}"
            + "".join(f"{statistics.median(c):>9.0f}" if c else f"{'-':>9}" for c in cells)
        )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
