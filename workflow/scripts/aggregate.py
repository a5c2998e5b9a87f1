"""Snakemake entry: every trial JSON of the plan into results/measured/trials.csv."""
import sys

from infpop.aggregate import collect_rows, write_csv
from infpop.records import RecordError

with open(snakemake.log[0], "w") as log:
    try:
        rows = collect_rows(snakemake.input)
    except RecordError as exc:
        print(exc, file=log)
        sys.exit(f"aggregate: {exc}")
    write_csv(rows, snakemake.output[0])
    print(f"{len(rows)} trials -> {snakemake.output[0]}", file=log)
