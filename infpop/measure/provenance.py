"""What the results were measured with: results/provenance.json and its per-sweep table.

From the trial records themselves (each carries its environment): the workflow's git commit and
config hash of this run, the library versions each engine actually ran with, the hardware each
hardware label actually was, and, per sweep, the trials whose environment differs from the rest
of their sweep (a sweep resumed on another node, after an upgrade, or from another commit).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

from infpop.measure import records
from infpop.measure.aggregate import read_manifest

#: The environment fields that make two trials comparable. Memory totals and CUDA_VISIBLE_DEVICES
#: are left out: the same node reports them differently from one job to the next.
SIGNATURE_FIELDS = (
    "host",
    "platform",
    "cpu",
    "cpu_count",
    "gpus",
    "driver",
    "cuda",
    "python",
    "libraries",
    "git_commit",
)

SWEEP_COLUMNS = [
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "trials",
    "host",
    "gpus",
    "libraries",
    "git_commit",
    "differing_trials",
    "differences",
]


def config_hash(config: dict) -> str:
    """sha256 of the settings every trial depends on (the config's measurement settings), canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def signature(environment: dict) -> dict:
    """The comparable part of a trial's environment (GPUs by name and memory, in order)."""
    sig = {field: environment.get(field) for field in SIGNATURE_FIELDS}
    sig["gpus"] = [f"{g.get('name')} ({g.get('memory_bytes')} B)" for g in environment.get("gpus") or []]
    return sig


def _key(value) -> str:
    return json.dumps(value, sort_keys=True)


def _differences(sig: dict, reference: dict) -> dict:
    """{field: {"trial": value, "sweep": value}} where a trial's signature departs from its sweep's."""
    out = {}
    for field in SIGNATURE_FIELDS:
        if field == "libraries":
            names = sorted(set(sig["libraries"] or {}) | set(reference["libraries"] or {}))
            for name in names:
                mine, theirs = (sig["libraries"] or {}).get(name), (reference["libraries"] or {}).get(name)
                if mine != theirs:
                    out[f"libraries.{name}"] = {"trial": mine, "sweep": theirs}
        elif sig[field] != reference[field]:
            out[field] = {"trial": sig[field], "sweep": reference[field]}
    return out


def _sorted_set(values) -> list:
    return sorted({v for v in values if v is not None}, key=str)


def build(manifests: list[Path], config: dict, workflow_commit: str | None) -> dict:
    """The provenance of every trial listed in the sweep manifests."""
    engines: dict[str, dict] = {}
    hardware: dict[str, dict] = {}
    sweeps = []
    commits = Counter()
    for manifest in manifests:
        manifest = Path(manifest)
        trials = []
        for relpath in read_manifest(manifest)["trials"]:
            record = records.read(manifest.parent / relpath)
            trials.append((str(manifest.parent / relpath), record))
        if not trials:
            continue
        first = trials[0][1]
        sigs = [(path, signature(record.get("environment") or {})) for path, record in trials]
        # The sweep's environment is the one most of its trials ran in (the first on a tie).
        counts = Counter(_key(sig) for _, sig in sigs)
        top = max(counts.values())
        reference = next(sig for _, sig in sigs if counts[_key(sig)] == top)
        differing = []
        for path, sig in sigs:
            diff = _differences(sig, reference)
            if diff:
                differing.append({"trial": path, "differences": diff})
        for _, sig in sigs:
            commits[sig["git_commit"] or "unknown"] += 1
            engine = engines.setdefault(first["engine"], {"libraries": {}, "python": set()})
            for name, version in (sig["libraries"] or {}).items():
                engine["libraries"].setdefault(name, set()).add(version)
            engine["python"].add(sig["python"])
            seen = hardware.setdefault(
                first["hardware"], {"hosts": set(), "cpus": set(), "gpus": set(), "drivers": set(), "cuda": set()}
            )
            seen["hosts"].add(sig["host"])
            seen["cpus"].add(f"{sig['cpu']} x{sig['cpu_count']}")
            seen["gpus"].update(sig["gpus"])
            seen["drivers"].add(sig["driver"])
            seen["cuda"].add(sig["cuda"])
        sweeps.append(
            {
                "hardware": first["hardware"],
                "engine": first["engine"],
                "model": first["model"],
                "n_gpus": first["n_gpus"],
                "manifest": str(manifest),
                "trials": len(trials),
                "environment": reference,
                "differing_trials": differing,
            }
        )
    return {
        "workflow": {"git_commit": workflow_commit, "config_sha256": config_hash(config)},
        "trial_git_commits": dict(sorted(commits.items())),
        "engines": {
            name: {
                "libraries": {lib: _sorted_set(v) for lib, v in sorted(seen["libraries"].items())},
                "python": _sorted_set(seen["python"]),
            }
            for name, seen in sorted(engines.items())
        },
        "hardware": {
            name: {field: _sorted_set(values) for field, values in seen.items()}
            for name, seen in sorted(hardware.items())
        },
        "sweeps": sweeps,
        "flagged_trials": [d["trial"] for s in sweeps for d in s["differing_trials"]],
    }


def sweep_rows(provenance: dict) -> list[dict]:
    """One row per sweep, for the report's table."""
    rows = []
    for sweep in provenance["sweeps"]:
        env = sweep["environment"]
        differing = sweep["differing_trials"]
        fields = sorted({field for d in differing for field in d["differences"]})
        rows.append(
            {
                "hardware": sweep["hardware"],
                "engine": sweep["engine"],
                "model": sweep["model"],
                "n_gpus": sweep["n_gpus"],
                "trials": sweep["trials"],
                "host": env["host"],
                "gpus": "; ".join(env["gpus"]) or "none",
                "libraries": " ".join(f"{k}=={v}" for k, v in sorted((env["libraries"] or {}).items())),
                "git_commit": env["git_commit"],
                "differing_trials": len(differing),
                "differences": ", ".join(fields),
            }
        )
    return rows


def write(provenance: dict, json_path: Path, csv_path: Path) -> None:
    for path in (Path(json_path), Path(csv_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(provenance, indent=1) + "\n")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_COLUMNS)
        writer.writeheader()
        writer.writerows(sweep_rows(provenance))
