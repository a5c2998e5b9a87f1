"""Snakemake entry: build a local model folder with the builder its settings name (tiny, gguf)."""
from pathlib import Path

from infpop.model_build import build_model, describe

out = build_model(Path(snakemake.output[0]), snakemake.params.settings,
                  {name: Path(path) for name, path in snakemake.input.items()})
with open(snakemake.log[0], "w") as log:
    print(describe(out), file=log)
