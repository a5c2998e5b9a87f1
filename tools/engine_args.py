"""Write the engines' own argument definitions as snapshots the config check reads
(workflow/schemas/engine_args/): a config's `engine_args` are checked against them when it is
loaded, without importing vLLM or transformers (6 to 15 s here, on every Snakemake start).

- vllm.json: a JSON schema of the keyword arguments `vllm.LLM(...)` accepts: every EngineArgs
  field and LLM's own, with its type and, where vLLM's config classes bound it (pydantic
  Field(gt=0, le=1) on CacheConfig.gpu_memory_utilization, say), its range. The EngineArgs
  field -> config field map is read from EngineArgs.add_cli_args, which names it for every flag.
  Defaults are kept as `x-default`, never `default` (the config loader would fill them in).
- hf.json: the keyword arguments AutoModelForCausalLM.from_pretrained reads itself, and the
  attributes every model config has (other names are model-config overrides, checked against a
  model's config.json where it is on disk).
- hf_serve.json: a JSON schema of the options of `transformers serve` (transformers' own server,
  the hf engine's in serving mode): the parameters of transformers.cli.serve.Serve, with their
  types and choices, as its command line takes them.

    python -m tools.engine_args           # write all three from the installed libraries
    python -m tools.engine_args --check   # exit 1 if a snapshot differs from them
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import inspect
import json
import sys
import textwrap
import typing

from infpop.config.engine_args import SNAPSHOT_DIR


def _config_fields(engine_args_class) -> dict[str, tuple[str, str]]:
    """{EngineArgs field: (config class, its field)} from EngineArgs.add_cli_args, whose calls
    read `group.add_argument("--kv-cache-dtype", **cache_kwargs["cache_dtype"])` with
    `cache_kwargs = get_kwargs(CacheConfig)`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(engine_args_class.add_cli_args)))
    kwargs_of = {}  # cache_kwargs -> CacheConfig
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if getattr(node.value.func, "id", None) == "get_kwargs" and isinstance(node.targets[0], ast.Name):
                kwargs_of[node.targets[0].id] = node.value.args[0].id
    aliases: dict[str, tuple[str, str]] = {}

    def reference(value) -> tuple[str, str] | None:
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) and value.value.id in kwargs_of:
            return kwargs_of[value.value.id], value.slice.value
        if isinstance(value, ast.Dict):
            for key, item in zip(value.keys, value.values, strict=True):
                if key is None and (found := reference(item)):
                    return found
        if isinstance(value, ast.Name):
            return aliases.get(value.id)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and (found := reference(node.value)):
            aliases[node.targets[0].id] = found
    mapping = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
            for keyword in node.keywords:
                if keyword.arg is None and flags and (found := reference(keyword.value)):
                    mapping[flags[0][2:].replace("-", "_")] = found
    return mapping


def _jsonable(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def vllm_snapshot() -> dict:
    import vllm
    import vllm.config as vllm_config
    from pydantic import TypeAdapter
    from vllm import LLM
    from vllm.config.quantization import QuantizationConfigArgs
    from vllm.engine import arg_utils
    from vllm.engine.arg_utils import EngineArgs

    # one annotation names a class imported only for type checkers
    hints = typing.get_type_hints(EngineArgs, localns={"QuantizationConfigArgs": QuantizationConfigArgs})
    llm_parameters = inspect.signature(LLM.__init__).parameters
    llm_hints = typing.get_type_hints(LLM.__init__)
    config_fields = _config_fields(EngineArgs)
    properties = {}
    for field in dataclasses.fields(EngineArgs):
        hint = llm_hints.get(field.name, hints[field.name])  # LLM's own annotation is what a keyword meets first
        metadata, source = [], None
        if field.name in config_fields:
            class_name, name = config_fields[field.name]
            owner = getattr(vllm_config, class_name, None) or getattr(arg_utils, class_name)
            info = getattr(owner, "__pydantic_fields__", {}).get(name)
            source = f"{class_name}.{name}"
            metadata = list(info.metadata) if info is not None else []
        annotated = typing.Annotated[hint, *metadata] if metadata else hint
        try:
            schema = TypeAdapter(annotated).json_schema(mode="validation")
            if "$defs" in schema or "$ref" in schema:  # a nested vLLM config: vLLM checks its fields at load
                arms = typing.get_args(hint) or (hint,)
                names = {int: "integer", dict: "object", type(None): "null", str: "string"}
                types = sorted({"object"} | {names[a] for a in arms if a in names})
                schema = {"type": types if len(types) > 1 else types[0]}
        except Exception:  # noqa: BLE001 - a type pydantic cannot describe: the name is still checked
            schema = {}
        default = llm_parameters[field.name].default if field.name in llm_parameters else field.default
        if default is not dataclasses.MISSING and default is not inspect.Parameter.empty:
            schema["x-default"] = _jsonable(default)
        schema["x-python-type"] = str(hint).replace("typing.", "")
        if source:
            schema["x-vllm-config"] = source
        properties[field.name] = schema
    for name, parameter in llm_parameters.items():
        if name not in properties and name not in ("self", "kwargs"):
            properties[name] = {"x-python-type": str(parameter.annotation)}
    return {
        "$comment": "written by `python -m tools.engine_args` from the installed vLLM: do not edit",
        "x-version": vllm.__version__,
        "type": "object",
        "properties": dict(sorted(properties.items())),
    }


def _keywords_read(function) -> set[str]:
    """The names `function` reads from its **kwargs (kwargs.pop/get("name"), loops over lists)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) in ("pop", "get")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "kwargs"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.List):
            names |= {e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return names


def hf_snapshot() -> dict:
    import transformers
    from transformers import PreTrainedConfig, PreTrainedModel
    from transformers.models.auto import auto_factory

    explicit = [
        name
        for name in inspect.signature(PreTrainedModel.from_pretrained).parameters
        if name not in ("cls", "pretrained_model_name_or_path", "model_args", "kwargs")
    ]
    loader = set(explicit) | _keywords_read(PreTrainedModel.from_pretrained.__func__)
    loader |= _keywords_read(auto_factory._BaseAutoModelClass.from_pretrained.__func__)
    loader -= {"return_unused_kwargs"}
    config_attributes = set(PreTrainedConfig().to_dict())
    return {
        "$comment": "written by `python -m tools.engine_args` from the installed transformers: do not edit",
        "x-version": transformers.__version__,
        "from_pretrained": sorted(n for n in loader if not n.startswith("_")),
        "config_attributes": sorted(config_attributes),
    }


#: Bounds transformers states in words only (the options' help, ContinuousBatchingConfig's
#: docstring), not in a type: a count of blocks or tokens is positive, a memory share a fraction.
HF_SERVE_BOUNDS = {
    "cb_block_size": {"exclusiveMinimum": 0},
    "cb_num_blocks": {"exclusiveMinimum": 0},
    "cb_max_batch_tokens": {"exclusiveMinimum": 0},
    "cb_max_memory_percent": {"exclusiveMinimum": 0, "maximum": 1},
}


def hf_serve_snapshot() -> dict:
    import transformers
    from pydantic import TypeAdapter
    from transformers.cli.serve import Serve

    properties = {}
    for name, parameter in inspect.signature(Serve.__init__).parameters.items():
        if name == "self":
            continue
        annotation = parameter.annotation
        hint = getattr(annotation, "__origin__", annotation)  # typer's Annotated[type, Option(help=...)]
        helps = [getattr(m, "help", None) for m in getattr(annotation, "__metadata__", ())]
        try:
            schema = TypeAdapter(hint).json_schema(mode="validation")
            schema.pop("title", None)
            if "$defs" in schema or "$ref" in schema:  # an enum: inline its choices
                (definition,) = schema.pop("$defs").values()
                schema = {k: v for k, v in definition.items() if k in ("enum", "type")}
        except Exception:  # noqa: BLE001 - a type pydantic cannot describe: the name is still checked
            schema = {}
        bound = HF_SERVE_BOUNDS.get(name)
        if bound and "anyOf" in schema:
            schema["anyOf"] = [{**arm, **bound} if arm.get("type") != "null" else arm for arm in schema["anyOf"]]
        elif bound:
            schema.update(bound)
        if parameter.default is not inspect.Parameter.empty:
            schema["x-default"] = _jsonable(parameter.default)
        schema["x-python-type"] = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        schema["x-help"] = next((h for h in helps if h), None)
        properties[name] = schema
    return {
        "$comment": "written by `python -m tools.engine_args` from the installed transformers: do not edit",
        "x-version": transformers.__version__,
        "type": "object",
        "properties": dict(sorted(properties.items())),
    }


def render() -> dict[str, str]:
    return {
        name: json.dumps(snapshot, indent=1) + "\n"
        for name, snapshot in (
            ("vllm.json", vllm_snapshot()),
            ("hf.json", hf_snapshot()),
            ("hf_serve.json", hf_serve_snapshot()),
        )
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = SNAPSHOT_DIR / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}: run python -m tools.engine_args", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
