"""Local model folders: the one entry point of `rule build_model`, and what every builder shares.

A model of the config with `build: <builder>` is built into resources/models/<key> by one rule
that dispatches here on the builder's name:

- ``tiny``: a small Llama with seeded random weights and a tokenizer trained on the benchmark
  (infpop/data/tiny_model.py);
- ``gguf``: a real pretrained model, dequantized from a GGUF file that an installed Python
  package ships (infpop/data/gguf_model.py).

Every builder writes a HuggingFace folder (config.json, generation_config.json, float32
safetensors, tokenizer files) through :func:`save_model_folder`: written beside the target and
renamed into place, so an interrupted build never leaves a folder that looks complete, and with
canonical JSON so the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: The builders a config's `models.<key>.build` may name (the schema lists the same).
BUILDERS = ("tiny", "gguf")
#: Written into a built folder by builders whose model comes from elsewhere (where from, which hash).
PROVENANCE_FILE = "provenance.json"


def normalise_json(path: Path) -> None:
    """Rewrite a JSON file with a canonical layout (sorted keys, fixed indent)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_model_folder(out_dir: Path, model, tokenizer, extra_json: dict[str, Any] | None = None) -> Path:
    """Save ``model`` (safetensors) and ``tokenizer`` into ``out_dir``, replacing what is there.

    ``extra_json`` maps further file names to JSON data written beside them (e.g. provenance).
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, data in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # Canonical key order for the small metadata files. tokenizer.json is left as the
        # tokenizers library writes it (already deterministic: vocab and added tokens by id,
        # merges in order).
        for name in ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tmp / name).exists():
                normalise_json(tmp / name)
        # mkdtemp makes the folder 0700 and safetensors leaves the weights 0600; give the model
        # ordinary permissions so another user (e.g. a container) can read it.
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def build_model(out_dir: Path, settings: dict, inputs: dict[str, Path]) -> Path:
    """Build one model folder. ``settings["build"]`` names the builder; ``inputs`` holds its
    files: the benchmark (tiny: the tokenizer's training text) or the GGUF file (gguf)."""
    builder = settings.get("build")
    if builder == "tiny":
        from infpop.data.tiny_model import build_tiny_model, read_benchmark_texts

        return build_tiny_model(out_dir, read_benchmark_texts(Path(inputs["benchmark"])), seed=settings["seed"])
    if builder == "gguf":
        from infpop.data.gguf_model import build_gguf_model

        return build_gguf_model(out_dir, Path(inputs["gguf"]), source=settings["source"])
    raise ValueError(f"unknown model builder {builder!r} (known: {', '.join(BUILDERS)})")


def describe(out_dir: Path) -> str:
    """One line for a build's log: the parameter count, and where the model came from."""
    from infpop.data.tiny_model import count_parameters

    text = f"built {out_dir}: {count_parameters(out_dir):,} parameters"
    provenance = Path(out_dir) / PROVENANCE_FILE
    if provenance.is_file():
        text += f"; provenance {json.dumps(json.loads(provenance.read_text(encoding='utf-8')), sort_keys=True)}"
    return text
