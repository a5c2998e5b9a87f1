"""Gather the trial JSONs of a run into one tidy table (results/<dataset>/trials.csv: measured, or a
rehearsal's; never the one's records in the other's table)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from infpop.measure import records
from infpop.trials import TIDY_COLUMNS


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise records.RecordError(f"{path}: cannot read sweep manifest: {exc}") from None


def collect_rows(manifests: list[Path], dataset: str = records.MEASURED) -> list[dict]:
    """One tidy row per trial listed in the sweep manifests (trial paths are relative to each
    manifest's folder); a bad trial JSON, or one of another dataset (a simulated trial in a
    measured dataset, or the reverse), stops it, naming the file."""
    rows = []
    for manifest in manifests:
        for relpath in read_manifest(manifest)["trials"]:
            path = Path(manifest).parent / relpath
            record = records.read(path)
            records.check_dataset(record, dataset, str(path))
            rows.append(records.tidy_row(record, path=str(path)))
    key = ("hardware", "engine", "model", "n_gpus", "settings", "max_new_tokens", "batch_size", "rep")
    return sorted(rows, key=lambda row: tuple(row[k] for k in key))


def write_csv(rows: list[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
