"""Snakemake entry: the serving records' analysis into results/serve/ (knees, Pareto front, knob
effects on goodput, the goodput landscape)."""

import sys

from infpop.logs import setup
from infpop.measure.records import RecordError
from infpop.serve import analysis, tables

log = setup(snakemake)
try:
    _, table = tables.load(snakemake.input, snakemake.config["serve"])
except RecordError as exc:
    log.error(str(exc))
    sys.exit(f"serve_analysis: {exc}")
knees = analysis.latency_knees(table)
front = analysis.pareto_rows(table)
effects = analysis.knob_effects(table)
tables.write_csv(knees, snakemake.output.knees)
tables.write_csv(front, snakemake.output.pareto)
tables.write_csv(effects, snakemake.output.knobs)
analysis.goodput_landscape_png(table, snakemake.output.landscape)
log.info(
    f"{len(table)} load points: {sum(k['knee_request_rate'] is not None for k in knees)} of {len(knees)} curves "
    f"with a knee, {len(front)} load points on the Pareto front, {len(effects)} knob tests"
)
