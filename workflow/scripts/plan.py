"""Snakemake entry: write the plan (sweeps to run, combinations left out and why)."""

from infpop.logs import setup
from infpop.measure.grid import write_plan

log = setup(snakemake)
rows = write_plan(snakemake.config, snakemake.output[0])
run = [r for r in rows if r["planned"] == "run"]
log.info(f"{len(run)} sweeps, {sum(r['n_trials'] for r in run)} trials; {len(rows) - len(run)} combinations left out")
