"""Snakemake entry: write the serving plan (servers to run, what is left out and why)."""

from infpop.logs import setup
from infpop.serve.plan import write_plan

log = setup(snakemake)
rows = write_plan(snakemake.config, snakemake.output[0])
run = [r for r in rows if r["planned"] == "run"]
log.info(
    f"{len(run)} servers, {sum(r['n_load_points'] for r in run)} load-point records; {len(rows) - len(run)} left out"
)
