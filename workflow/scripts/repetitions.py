"""Snakemake entry: each configuration's repetitions as data (mean, CV, 95% CI, why they stopped)
and the noise of each sweep."""

from infpop.analysis.noise import configuration_table, noise_png, noise_table, stop_reasons
from infpop.analysis.selection import read_trials
from infpop.logs import setup
from infpop.measure.aggregate import read_manifest

log = setup(snakemake)
trials = read_trials(snakemake.input.trials)
configurations = configuration_table(trials, stop_reasons([read_manifest(p) for p in snakemake.input.manifests]))
configurations.to_csv(snakemake.output.configurations, index=False)
noise = noise_table(configurations)
noise.to_csv(snakemake.output.noise, index=False)
noise_png(configurations, snakemake.output.png)
log.info(
    f"{len(configurations)} configurations; median CV per sweep: "
    + ", ".join(f"{r.engine} g{r.n_gpus} {r.median_cv:.3f}" for r in noise.itertuples())
)
