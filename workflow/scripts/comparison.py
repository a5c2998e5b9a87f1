"""Snakemake entry: the paper's stated numbers beside the replay's values."""

from pathlib import Path

import pandas as pd

from infpop.analysis.comparison import compare, summary, to_markdown
from infpop.logs import setup

log = setup(snakemake)
reference = pd.read_csv(snakemake.input.reference, dtype=str, keep_default_na=False)
outputs = {name: pd.read_csv(path) for name, path in snakemake.input.items() if name != "reference"}
table = compare(reference, outputs)
table.to_csv(snakemake.output.csv, index=False)
Path(snakemake.output.md).write_text(to_markdown(table))
log.info(summary(table))
