"""Snakemake entry: the paper's conclusions checked on a dataset: what the paper states, and each
landscape's optimum against the paper's published trials."""

from pathlib import Path

from infpop import conclusions
from infpop.analysis.selection import AnalysisSettings, read_trials
from infpop.logs import setup

if __name__ == "__main__":  # the RQ5 search may start worker processes, which re-import this file
    log = setup(snakemake)
    settings = AnalysisSettings(**snakemake.params.settings)
    dataset = conclusions.findings(read_trials(snakemake.input.trials), settings)
    reference = None
    if "reference" in snakemake.input.keys():
        same = snakemake.input.reference == snakemake.input.trials and snakemake.params.reference_settings == (
            snakemake.params.settings
        )
        reference_settings = AnalysisSettings(**snakemake.params.reference_settings)
        reference = (
            dataset if same else conclusions.findings(read_trials(snakemake.input.reference), reference_settings)
        )
    statements = conclusions.read_statements(snakemake.input.paper_reference, snakemake.input.paper_findings)
    table = conclusions.check(
        dataset,
        statements,
        reference,
        reference_label="paper",
        relative_families=snakemake.params.relative_families,
        paper=reference,
    )
    table.to_csv(snakemake.output.csv, index=False)
    Path(snakemake.output.md).write_text(conclusions.to_markdown(table, snakemake.wildcards.dataset))
    conclusions.conclusions_png(table, snakemake.output.png, snakemake.wildcards.dataset, reference_label="paper")
    log.info(f"{len(table)} checks: {conclusions.counts(table)}")
