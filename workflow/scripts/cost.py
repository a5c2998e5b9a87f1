"""Snakemake entry: what a dataset's trials cost, device-hours per hardware, engine and model."""

from pathlib import Path

from infpop.analysis.cost import cost_markdown, cost_png, cost_table
from infpop.analysis.selection import read_trials
from infpop.logs import setup

log = setup(snakemake)
table = cost_table(read_trials(snakemake.input[0]), snakemake.params.cpu_hardware)
table.to_csv(snakemake.output.csv, index=False)
Path(snakemake.output.md).write_text(cost_markdown(table, snakemake.wildcards.dataset, snakemake.params.how))
cost_png(table, snakemake.output.png, snakemake.wildcards.dataset)
log.info(
    f"{table['device_hours'].sum():,.2f} device-hours: trials {table['trial_device_hours'].sum():,.2f} "
    f"({table['trials_costed'].sum():,} of {table['trials'].sum():,} with a cost), model loads "
    f"{table['load_device_hours'].sum():,.2f} ({table['loads'].sum():,})"
)
