"""Snakemake entry: RQ4, the newer GPU model against the older on paired trials."""

from infpop.analysis.rq4 import rq4_improvement, rq4_wilcoxon
from infpop.analysis.selection import load_selected, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
write_table(rq4_wilcoxon(trials), snakemake.output.wilcoxon, settings)
write_table(rq4_improvement(trials), snakemake.output.improvement, settings)
log.info(f"{len(trials)} trials analysed")
