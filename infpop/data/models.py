"""A model entry of the config (`models.<key>`) and where its files are: a local folder, the
folder a builder makes (`build`, under resources/models/), or the downloaded snapshot of a hub
model (`hf_id`); and what the trial records call it.

Relative paths are from the working directory, the workflow's, as every other path of a config.
"""

from __future__ import annotations

import json
from pathlib import Path

from infpop.data.hub import DEFAULT_REVISION, SnapshotMissing, manifest_path, read_manifest

BUILT_MODELS_DIR = "resources/models"  # rules/data.smk builds models with `build` here


def model_dir(spec: dict) -> Path | None:
    """The local directory of a model spec, absolute (None for a hub model)."""
    if "path" not in spec:
        return None
    return Path(spec["path"]).expanduser().resolve()


def model_source(spec: dict) -> str:
    """Where a model comes from, as trial records name it: the HuggingFace id, or the local
    directory. (An hf_id model is loaded from its downloaded snapshot: `model_files`.)"""
    return spec["hf_id"] if "hf_id" in spec else str(model_dir(spec))


def model_files(config: dict, key: str) -> tuple[str, str | None]:
    """(the folder the engines load, the commit measured) of model `key`: a local model's
    directory (no commit), or a hub model's downloaded snapshot and its commit."""
    spec = config["models"][key]
    if "hf_id" not in spec:
        return str(model_dir(spec)), None
    models_dir = Path(config["models_dir"])
    manifest = read_manifest(models_dir, key)
    path = manifest_path(models_dir, key)
    wanted = (spec["hf_id"], spec.get("revision") or DEFAULT_REVISION)
    if (manifest.get("repo_id"), manifest.get("revision")) != wanted:
        raise SnapshotMissing(
            f"{path} is {manifest.get('repo_id')}@{manifest.get('revision')}, the config asks "
            f"for {wanted[0]}@{wanted[1]}: delete it and download again"
        )
    snapshot = models_dir / manifest["snapshot"]
    missing = [f["path"] for f in manifest["files"] if not (snapshot / f["path"]).is_file()]
    if missing:
        raise SnapshotMissing(
            f"the snapshot of model '{key}' in {snapshot} lacks {', '.join(missing[:3])}"
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            + f": delete {path} and download again"
        )
    return str(snapshot.resolve()), manifest["commit"]


def known_model_config(config: dict, key: str) -> dict | None:
    """Model `key`'s config.json where it is on disk already (a local model's folder, or the
    downloaded snapshot of a hub model), else None: at planning time a hub model may not be
    downloaded yet, nor a model with `build` built, and nothing may be fetched to find out."""
    try:
        folder, _ = model_files(config, key)
    except SnapshotMissing:
        return None
    try:
        settings = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None
