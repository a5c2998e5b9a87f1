"""Snakemake entry: every trial JSON of the plan into results/<dataset>/trials.csv (measured, or a
rehearsal's)."""

import sys

from infpop.logs import setup
from infpop.measure.aggregate import collect_rows, write_csv
from infpop.measure.records import RecordError

log = setup(snakemake)
try:
    rows = collect_rows(snakemake.input, snakemake.params.dataset)
except RecordError as exc:
    log.error(str(exc))
    sys.exit(f"aggregate: {exc}")
write_csv(rows, snakemake.output[0])
log.info(f"{len(rows)} trials -> {snakemake.output[0]}")
