"""Snakemake entry: results/provenance.json and its per-sweep table, from the trial records."""

from infpop.logs import setup
from infpop.measure import environment, provenance

log = setup(snakemake)
built = provenance.build(snakemake.input, dict(snakemake.params.measured), environment.git_commit())
provenance.write(built, snakemake.output.json, snakemake.output.sweeps)
log.info(
    f"{len(built['sweeps'])} sweeps, {len(built['flagged_trials'])} trial(s) whose environment differs "
    f"from the rest of their sweep"
)
for path in built["flagged_trials"]:
    log.warning(f"differs from its sweep: {path}")
