"""A model folder as every builder writes it (config.json, generation_config.json, float32
safetensors, tokenizer files), and what a finished one says about itself.

:func:`save_model_folder` writes beside the target and renames into place, so an interrupted build
never leaves a folder that looks complete, with canonical JSON so the same inputs give
byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

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


def count_parameters(model_dir: Path) -> int:
    """Number of parameters stored in a saved model folder (reads safetensors headers only)."""
    total = 0
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            size = 1
            for d in meta["shape"]:
                size *= d
            total += size
    return total


def describe(out_dir: Path) -> str:
    """One line for a build's log: the parameter count, and where the model came from."""
    text = f"built {out_dir}: {count_parameters(out_dir):,} parameters"
    provenance = Path(out_dir) / PROVENANCE_FILE
    if provenance.is_file():
        text += f"; provenance {json.dumps(json.loads(provenance.read_text(encoding='utf-8')), sort_keys=True)}"
    return text
