"""Snakemake entry: results/provenance.json and its per-sweep table, from the trial records."""
from infpop import environment, provenance

with open(snakemake.log[0], "w") as log:
    built = provenance.build(snakemake.input, dict(snakemake.params.config), environment.git_commit())
    provenance.write(built, snakemake.output.json, snakemake.output.sweeps)
    print(f"{len(built['sweeps'])} sweeps, {len(built['flagged_trials'])} trial(s) whose environment differs "
          f"from the rest of their sweep", file=log)
    for path in built["flagged_trials"]:
        print(f"  differs from its sweep: {path}", file=log)
