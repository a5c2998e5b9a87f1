"""Snakemake entry: write the plan (sweeps to run, combinations left out and why)."""
from infpop.plan import write_plan

rows = write_plan(snakemake.params.config, snakemake.output[0])
with open(snakemake.log[0], "w") as log:
    run = [r for r in rows if r["planned"] == "run"]
    print(f"{len(run)} sweeps, {sum(r['n_trials'] for r in run)} trials; "
          f"{len(rows) - len(run)} combinations left out", file=log)
