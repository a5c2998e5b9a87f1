"""Snakemake entry: RQ2 ANOVA and Tukey HSD across GPU counts at batch size 1."""

from infpop.analysis.rq2 import rq2_anova, rq2_tukey
from infpop.analysis.selection import load_selected, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input[0], snakemake.params.settings)
write_table(rq2_anova(trials), snakemake.output.anova, settings)
write_table(rq2_tukey(trials), snakemake.output.tukey, settings)
log.info(f"{len(trials)} trials analysed")
