"""Snakemake entry: every serving record of the plan into results/serve/ (tables and figure)."""

import sys

from infpop.logs import setup
from infpop.measure.records import RecordError
from infpop.serve import tables

log = setup(snakemake)
try:
    collected, table = tables.load(snakemake.input, snakemake.config["serve"])
except RecordError as exc:
    log.error(str(exc))
    sys.exit(f"serve_tables: {exc}")
tables.write_csv(table, snakemake.output.loadpoints)
tables.write_csv(tables.summary(table), snakemake.output.summary)
crosscheck = tables.harness_crosscheck(table, collected)
tables.write_csv(crosscheck, snakemake.output.crosscheck, tables.CROSSCHECK_COLUMNS)
tables.latency_throughput_png(table, snakemake.output.png)
saturated = sum(bool(row.get("over_saturated")) for row in table)
log.info(f"{len(table)} load points ({saturated} over-saturated), {len(crosscheck)} cross-check rows")
