"""Write docs/configuration.md from the config schema's own descriptions, types and defaults, so
the reference never becomes a second copy that drifts.

    python -m tools.config_reference          write docs/configuration.md
    python -m tools.config_reference --check  exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import json
import sys

from infpop import REPO_ROOT
from infpop.config import load_schema

OUT = REPO_ROOT / "docs" / "configuration.md"

HEADER = """# Configuration reference

<!-- Written by `python -m tools.config_reference` from workflow/schemas/config.schema.yaml: do not
edit; tests/test_docs.py checks it is current. -->

One YAML file describes an experiment (`config.yaml` is the default, `configs/` holds others; run
one with `--configfile`, which replaces the default rather than merging into it, and override a
key with `--config key=value`, read as YAML: `--config 'batch_sizes=[1,2]'`,
`--config 'optimise={"tune": {"budget": 7}}'`). The config is checked before any job runs and
defaults are filled in. Every problem is reported at once, each with its key and where it was set:
the file and line of the entry itself, or the command-line argument. A name close to a known one
gets a did-you-mean; a problem with a value you never set says it is a default, and where the value
it conflicts with was set:

```
InfPop: invalid config:
  my.yaml:14: config key 'batch_sizes[1]': 8.0 is not an integer (write 8)
  my.yaml:7: config key 'batch_size': unknown key 'batch_size' at the top level (did you mean 'batch_sizes'?)
  my.yaml:31: config key 'engine_args.vllm.gpu_memory_utilisation': is not an argument of vllm.LLM (vLLM 0.32.0) (did you mean 'gpu_memory_utilization'?)
  --config n_gpus=[1, 64]: config key 'n_gpus[1]': 64 devices, more than a node of any hardware of the config has (devices per node: 'cpu' 2; on the CPU, its cores)
```

What is checked beyond the types and ranges below: a key given twice in one mapping (YAML would
keep the last silently); where results and downloads go (not a system folder, not a file, a
folder you may write); GPU counts against what a node has; every engine argument against the
engine's own definitions (vLLM's `LLM`/`EngineArgs` fields, types and ranges; the arguments
transformers' `from_pretrained` reads, or the model's config keys), from snapshots in
`workflow/schemas/engine_args/` (`python -m tools.engine_args` writes them); the paper data's
folder and files; every reference to a hardware, model or engine; the SLURM partitions file.
Snakemake reads `--configfile` files itself before the workflow starts: a file it cannot read at
all (missing, or not YAML) stops it with its own message. `python -m infpop.config FILE ...
[--config KEY=VALUE ...]` checks files as the workflow will and names the file, line and column.

A re-run does only what changed. Each job's recorded parameters are what its outputs depend on:
a measuring job's, the settings its trials depend on (the model, hardware, engine arguments,
dtype, prompts, warm-up, repetitions, the grid); an analysis's, its section. Time limits
(`trial_timeout_s`, `load_timeout_s`), `runtime_estimate`, `models_dir`, `cluster`, where the
paper's files are copied from (`paper_data.local_dir`), `analysis`, `optimise` and `crosscheck`
never re-run a sweep (tests/test_workflow.py holds the table of what each change re-runs). A trial
a sweep finds measured with the same settings is kept, not measured again.

Before it runs, the plan says what it will do: sweeps, jobs, trials and the device-hours they are
estimated to take, by the cost model calibrated on earlier trials or by `runtime_estimate`, with
which for what (`InfPop plan: ...` on the terminal; `results/plan.csv` lists every combination, run
or left out, with the reason; docs/cluster.md, "The cost model").

`<key>` stands for a name you choose (a model key, a hardware label).
"""


def _resolve(schema: dict, root: dict) -> dict:
    """A schema with a local $ref followed (one level), and a oneOf's types gathered."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _type(schema: dict, root: dict) -> str:
    schema = _resolve(schema, root)
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches and "type" not in schema:
        return " or ".join(_type(b, root) for b in branches)
    kind = schema.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "array" in kinds and "items" in schema:
        text = text.replace("array", f"list of {_type(schema['items'], root)}")
    return text or "mapping"


def _default(schema: dict) -> str:
    if "default" not in schema:
        return ""
    value = schema["default"]
    if value in ({}, []) and schema.get("type") == "object":
        return ""
    return f"`{json.dumps(value)}`"


def _text(schema: dict) -> str:
    return " ".join(str(schema.get("description", "")).split()).replace("|", "\\|")


def _rows(schema: dict, root: dict, prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        key = f"{prefix}{name}"
        note = " (required)" if name in required else ""
        rows.append(f"| `{key}`{note} | {_type(sub, root)} | {_default(sub)} | {_text(sub)} |")
        rows += _children(sub, root, key)
    return rows


def _children(schema: dict, root: dict, key: str) -> list[str]:
    """The keys under a mapping: its properties, or the properties of each `<key>` entry."""
    rows = []
    if "properties" in schema:
        rows += _rows(schema, root, f"{key}.", set(schema.get("required", [])))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        rows += _rows(extra, root, f"{key}.<key>.", set(extra.get("required", [])))
    for branch in schema.get("oneOf", []):
        branch = _resolve(branch, root)
        if branch.get("type") == "object" and "properties" in branch:
            rows += _rows(branch, root, f"{key}.", set(branch.get("required", [])))
    return rows


def render() -> str:
    schema = load_schema()
    lines = [HEADER, "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += _rows(schema, schema, "", set(schema.get("required", [])))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(
                f"{OUT.relative_to(REPO_ROOT)} is not what the schema gives: run python -m tools.config_reference",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
