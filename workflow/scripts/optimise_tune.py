"""Snakemake entry: live tuning of each configured engine through real trials."""

import json
import signal
import sys
from pathlib import Path

import pandas as pd

from infpop.logs import job_log_stream, setup
from infpop.optimise.tune import pareto_png, recommendations, tune

# Snakemake and SLURM stop a job with SIGTERM: exit through tune's cleanup, which stops the workers.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
config = snakemake.config  # its params are what its trials depend on
results = []
for engine, result_path, history_path, pareto_path in zip(
    config["optimise"]["tune"]["engines"],
    snakemake.output.results,
    snakemake.output.histories,
    snakemake.output.pareto,
    strict=False,
):
    result = tune(
        config,
        engine,
        Path(snakemake.params.trials_dir),
        Path(snakemake.input.benchmark),
        worker_stderr=job_log_stream(),
    )
    Path(result_path).write_text(json.dumps(result, indent=1) + "\n")
    pd.DataFrame(result["evaluations"]).to_csv(history_path, index=False)
    pareto_png(result, pareto_path)
    results.append(result)
recommendations(results).to_csv(snakemake.output.recommendations, index=False)
log.info(f"recommendations -> {snakemake.output.recommendations}")
