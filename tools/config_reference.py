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
key with `--config key=value`). The config is validated before any job runs and defaults are
filled in; a bad value stops the run with the key, and the file and line, named:

```
InfPop: invalid config:
  my.yaml:5: config key 'batch_sizes[1]': 0 is less than the minimum of 1
  my.yaml:3: config key 'engines[1]': 'tgi' is not one of ['hf', 'vllm']
```

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
