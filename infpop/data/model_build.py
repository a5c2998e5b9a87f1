"""Local model folders: the one entry point of `rule build_model`, which dispatches on the builder.

A model of the config with `build: <builder>` is built into resources/models/<key> by one rule
that dispatches here on the builder's name:

- ``tiny``: a small Llama with seeded random weights and a tokenizer trained on the benchmark
  (infpop/data/tiny_model.py);
- ``gguf``: a real pretrained model, dequantized from a GGUF file that an installed Python
  package ships (infpop/data/gguf_model.py).

Every builder writes a HuggingFace folder through infpop.data.model_folder.save_model_folder.
"""

from __future__ import annotations

from pathlib import Path

from infpop.data.gguf_model import build_gguf_model
from infpop.data.tiny_model import build_tiny_model, read_benchmark_texts

#: The builders a config's `models.<key>.build` may name (the schema lists the same).
BUILDERS = ("tiny", "gguf")


def build_model(out_dir: Path, settings: dict, inputs: dict[str, Path]) -> Path:
    """Build one model folder. ``settings["build"]`` names the builder; ``inputs`` holds its
    files: the benchmark (tiny: the tokenizer's training text) or the GGUF file (gguf)."""
    builder = settings.get("build")
    if builder == "tiny":
        return build_tiny_model(out_dir, read_benchmark_texts(Path(inputs["benchmark"])), seed=settings["seed"])
    if builder == "gguf":
        return build_gguf_model(out_dir, Path(inputs["gguf"]), source=settings["source"])
    raise ValueError(f"unknown model builder {builder!r} (known: {', '.join(BUILDERS)})")
