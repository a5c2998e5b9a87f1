"""Gather the trial JSONs of a run into one tidy table (results/measured/trials.csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from infpop.measure import records


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise records.RecordError(f"{path}: cannot read sweep manifest: {exc}") from None


def collect_rows(manifests: list[Path]) -> list[dict]:
    """One tidy row per trial listed in the sweep manifests (trial paths are relative to each
    manifest's folder); a bad trial JSON stops it, naming the file."""
    rows = []
    for manifest in manifests:
        for relpath in read_manifest(manifest)["trials"]:
            path = Path(manifest).parent / relpath
            rows.append(records.tidy_row(records.read(path), path=str(path)))
    key = ("hardware", "engine", "model", "n_gpus", "max_new_tokens", "batch_size", "rep")
    return sorted(rows, key=lambda row: tuple(row[k] for k in key))


def write_csv(rows: list[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=records.TIDY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
