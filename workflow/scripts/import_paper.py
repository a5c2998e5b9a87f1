"""Snakemake entry: fetch the paper's appendix (checked by sha256) and import its trials into
results/paper/trials.csv."""

import sys
from pathlib import Path

from infpop.data.paper import PaperDataError, fetch_appendix, import_paper, write_trials
from infpop.logs import setup

log = setup(snakemake)
# where to copy the files from, if not downloaded: not a param (the data is the same either way)
local_dir = snakemake.config["paper_data"]["local_dir"]
try:
    appendix = fetch_appendix(Path(snakemake.output.appendix), Path(local_dir) if local_dir else None)
    trials = import_paper(appendix)
except PaperDataError as exc:
    log.error(str(exc))
    sys.exit(f"import_paper: {exc}")
write_trials(trials, snakemake.output.trials)
log.info(f"{len(trials)} trials from {local_dir or 'the appendix repository'} -> {snakemake.output.trials}")
