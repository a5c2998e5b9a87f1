"""Snakemake entry: our trials against vllm bench throughput and a bare model.generate."""

import json
import signal
import sys
from pathlib import Path

import pandas as pd

from infpop.logs import job_log_stream, setup
from infpop.measure.crosscheck import COLUMNS, crosscheck_hf, crosscheck_vllm
from infpop.measure.grid import Sweep

# Snakemake and SLURM stop a job with SIGTERM: exit through the supervisors' cleanup.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
config = snakemake.config  # its params are what its trials depend on
section = config["crosscheck"]
rows, details = [], {}
for engine in section["engines"]:
    sweep = Sweep(section["hardware"], engine, section["model"], section["n_gpus"])
    out = Path(snakemake.output.folder) / sweep.relpath
    common = dict(
        config=config,
        sweep=sweep,
        out=out,
        benchmark_file=Path(snakemake.input.benchmark),
        tokens=section["max_new_tokens"],
        repeats=section["repeats"],
        worker_stderr=job_log_stream(),
    )
    if engine == "vllm":
        result = crosscheck_vllm(**common)
    else:
        result = crosscheck_hf(**common, batch_sizes=section["hf_batch_sizes"])
    for row in result["rows"]:
        log.info(
            f"[crosscheck] {row['engine']} b{row['batch_size']}: ours {row['ours_median_tokens_per_s']:,.1f} "
            f"vs {row['reference']} {row['reference_median_tokens_per_s']:,.1f} tok/s, ratio {row['ratio']:.3f}"
        )
    rows += result["rows"]
    details[engine] = result
pd.DataFrame(rows, columns=COLUMNS).to_csv(snakemake.output.table, index=False)
(Path(snakemake.output.folder) / "crosscheck.json").write_text(json.dumps(details, indent=1) + "\n")
