"""Snakemake entry: the budget study - each budget strategy alone and all combined on the
rehearsal of the grid, over seeds of its noise, against the paper's conclusion checks."""

from pathlib import Path

from infpop import conclusions
from infpop.analysis.selection import AnalysisSettings
from infpop.budget import study
from infpop.logs import setup

log = setup(snakemake)
# what the outputs depend on is in params (the config's keys the study reads); the rest of the
# validated config (the plan's exclusions read it) is unchanged by them
config = {**snakemake.config, **snakemake.params.study}
statements = conclusions.read_statements(snakemake.input.paper_reference, snakemake.input.paper_findings)
table, tables, full_hours = study.run_study(
    config, Path(snakemake.input.trials), AnalysisSettings(**snakemake.params.settings), statements
)
table.to_csv(snakemake.output.csv, index=False)
summary = study.summary(table)
Path(snakemake.output.md).write_text(study.to_markdown(summary, study.failing_families(tables), full_hours))
study.study_png(table, snakemake.output.png)
log.info("\n" + summary.to_string(index=False))
