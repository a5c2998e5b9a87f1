"""Snakemake entry: fetch the paper's appendix (checked by sha256) and import its trials into
results/paper/trials.csv."""
import sys
from pathlib import Path

from infpop.paper import PaperDataError, fetch_appendix, import_paper, write_trials

local_dir = snakemake.params.local_dir
with open(snakemake.log[0], "w") as log:
    try:
        appendix = fetch_appendix(Path(snakemake.output.appendix), Path(local_dir) if local_dir else None)
        trials = import_paper(appendix)
    except PaperDataError as exc:
        print(exc, file=log)
        sys.exit(f"import_paper: {exc}")
    write_trials(trials, snakemake.output.trials)
    source = local_dir or "the appendix repository"
    print(f"{len(trials)} trials from {source} -> {snakemake.output.trials}", file=log)
