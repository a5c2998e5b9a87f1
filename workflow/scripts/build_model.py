"""Snakemake entry: build a local model folder with the builder its settings name (tiny, gguf)."""

from pathlib import Path

from infpop.data.model_build import build_model
from infpop.data.model_folder import describe
from infpop.logs import setup

log = setup(snakemake)
out = build_model(
    Path(snakemake.output[0]), snakemake.params.settings, {name: Path(path) for name, path in snakemake.input.items()}
)
log.info(describe(out))
