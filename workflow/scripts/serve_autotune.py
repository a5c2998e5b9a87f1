"""Snakemake entry: vLLM's auto_tune against InfPop's tuning (serve.tuning), replayed on the
serving jobs' records or live on vLLM's servers: results/serve/autotune_comparison.csv,
autotune_probes.csv (and its figure) and capacity.csv."""

import signal
import sys
from pathlib import Path

from infpop.logs import setup
from infpop.measure.locks import FolderBusy, SnakemakeGone
from infpop.measure.records import RecordError
from infpop.serve import autotune, tables
from infpop.serve.session import ServeError

# Snakemake stops a job with SIGTERM: exit through the sessions' cleanup, which stops the servers.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

log = setup(snakemake)
config = snakemake.config
tuning = config["serve"]["tuning"]
try:
    if tuning["mode"] == "live":
        results = Path(snakemake.output.comparison).parent
        benchmark = Path(snakemake.input.benchmark)
        rows, probes, capacities = autotune.run_live(config, results / "tuning", benchmark, results / "confirm")
    else:
        rows, probes, capacities = autotune.run_replay(config, tables.collect(snakemake.input.manifests))
except (RecordError, ServeError, FolderBusy, SnakemakeGone) as exc:
    log.error(str(exc))
    sys.exit(f"serve_autotune: {exc}")
autotune.write_csv(rows, snakemake.output.comparison, autotune.COLUMNS)
autotune.write_csv(probes, snakemake.output.probes, autotune.PROBE_COLUMNS)
autotune.write_csv(capacities, snakemake.output.capacity, autotune.CAPACITY_COLUMNS)
autotune.probes_png(probes, snakemake.output.png)
met = sum(bool(r["goal_met"]) for r in rows)
log.info(f"{len(rows)} case(s) ({tuning['mode']}), the goal met on {met}")
