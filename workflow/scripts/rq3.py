"""Snakemake entry: RQ3 ANOVA across batch sizes, vLLM vs HF, and the batch-size curves."""

from pathlib import Path

from infpop.analysis.rq3 import batch_curves_png, rq3_anova, rq3_wilcoxon_engines
from infpop.analysis.selection import load_selected, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
write_table(rq3_anova(trials), snakemake.output.anova, settings)
write_table(rq3_wilcoxon_engines(trials), snakemake.output.wilcoxon, settings)
curves = Path(snakemake.output.curves)
curves.mkdir(parents=True, exist_ok=True)
for (hardware, engine, n_gpus), _ in trials.groupby(["hardware", "engine", "n_gpus"], sort=True):
    batch_curves_png(trials, hardware, engine, n_gpus, curves / f"{hardware}_{engine}_g{n_gpus}.png")
log.info(f"{len(trials)} trials analysed")
