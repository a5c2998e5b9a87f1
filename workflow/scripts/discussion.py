"""Snakemake entry: correlations between parameters, HumanEval and Table II throughput."""

import pandas as pd

from infpop.analysis.discussion import correlations
from infpop.analysis.rq2 import table2
from infpop.analysis.selection import load_selected, write_table
from infpop.logs import setup

log = setup(snakemake)
settings, trials = load_selected(snakemake.input.trials, snakemake.params.settings)
metadata = pd.DataFrame(snakemake.params.metadata)
# The paper correlates its Table II (A100); a dataset without a100 uses its first hardware.
hardware = "a100" if "a100" in set(trials["hardware"]) else sorted(set(trials["hardware"]))[0]
table = correlations(table2(trials, hardware), metadata)
table.insert(0, "hardware", hardware)
write_table(table, snakemake.output[0], settings)
log.info(f"{len(table)} correlations on {hardware}'s Table II")
