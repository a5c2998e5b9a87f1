"""Snakemake entry: build a tiny Llama (seeded weights, tokenizer trained on the benchmark)."""
from pathlib import Path

from infpop.tiny_model import build_tiny_model, count_parameters, read_benchmark_texts

out = build_tiny_model(Path(snakemake.output[0]), read_benchmark_texts(Path(snakemake.input[0])),
                       seed=snakemake.params.seed)
with open(snakemake.log[0], "w") as log:
    print(f"built {out}: {count_parameters(out):,} parameters", file=log)
