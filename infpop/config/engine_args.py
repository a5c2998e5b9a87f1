"""A config's `engine_args` against the engines' own argument definitions, before any job.

The definitions are snapshots of the installed libraries (workflow/schemas/engine_args/, written
by `python -m tools.engine_args`, kept current by a test): checking against vLLM itself would
import it, 6 to 15 s on every Snakemake start.

- vLLM: every key must be a keyword `vllm.LLM(...)` takes (an EngineArgs field or LLM's own), of
  its type and within the range vLLM's config classes give it (gpu_memory_utilization in (0, 1],
  max_num_seqs >= 1, kv_cache_dtype one of its names ...). What depends on the model or on other
  arguments is vLLM's to check at load.
- hf: every key must be a keyword AutoModelForCausalLM.from_pretrained reads, or a model-config
  attribute it overrides: one every config has, or a key of a model's config.json where it is on
  disk (a misspelt one would fail the load: transformers hands it to the model's constructor).

Names InfPop sets itself (the model, the GPU count, dtype, ...) are refused with what sets them.

The same definitions check the servers' arguments (serving mode, docs/serving.md): vLLM's
OpenAI-compatible server takes the same engine arguments as flags; transformers' server
(`transformers serve`) has options of its own (hf_serve.json). Any of them may be a grid axis, a
list of values: each value is checked here, and a combination of values that the engine refuses as
a whole (the engine's `refused_combination`, infpop/measure/engines: vLLM's scheduler needs
max_num_batched_tokens >= max_num_seqs, ...) is left out of the plan with the reason, not reported
as a bad config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache

import jsonschema
from jsonschema.exceptions import best_match

from infpop import SCHEMA_DIR
from infpop.config.schema import did_you_mean

SNAPSHOT_DIR = SCHEMA_DIR / "engine_args"

#: What InfPop passes itself (infpop/measure/engines/): given again, the engine would get it twice.
RESERVED = {
    "vllm": {
        "model": "the model entry (models.<key>)",
        "tensor_parallel_size": "the config key n_gpus",
        "dtype": "the config key dtype",
        "seed": "InfPop (0, every trial)",
        "disable_log_stats": (
            "InfPop: trials run vLLM as its users do, with its statistics logger off; the prefix "
            "cache's use is recorded without it"
        ),
    },
    "hf": {
        "pretrained_model_name_or_path": "the model entry (models.<key>)",
        "dtype": "the config key dtype",
        "torch_dtype": "the config key dtype (torch_dtype is dtype's old name, and InfPop passes dtype)",
        "device_map": "InfPop ('auto'; hf_offload says what may go off the GPUs)",
    },
}
#: What InfPop passes to each engine's server itself (infpop/serve/server.py).
SERVER_RESERVED = {
    "vllm": {
        "model": "the model entry (models.<key>)",
        "tensor_parallel_size": "the config key serve.n_gpus",
        "dtype": "the config key dtype",
        "served_model_name": "InfPop (the model's folder, which the load generators name)",
    },
    "hf": {
        "force_model": "the model entry (models.<key>)",
        "dtype": "the config key dtype",
        "device": "the hardware (cpu, or the job's GPUs)",
        "continuous_batching": "InfPop (always on: requests are batched as they arrive, as vLLM's server does)",
        "host": "InfPop (the server listens on localhost)",
        "port": "InfPop (a free port per server)",
        "non_blocking": "InfPop (the server runs in a process of its own)",
        "model_timeout": "InfPop (the preloaded model is never unloaded)",
    },
}
#: from_pretrained arguments transformers 5 reads and then drops without effect.
HF_IGNORED = {"low_cpu_mem_usage", "mirror", "from_tf", "from_flax", "offload_state_dict"}


@cache
def snapshot(engine: str) -> dict:
    return json.loads((SNAPSHOT_DIR / f"{engine}.json").read_text())


def problems(engine: str, arguments: Mapping, model_configs: Mapping[str, dict | None]) -> list[tuple[tuple, str]]:
    """(key path, message) for every engine argument the engine would refuse or misread.
    `model_configs`: each model's config.json where it is on disk (None where it is not)."""
    if not arguments:
        return []
    path = ("engine_args", engine)
    found = []
    for name in arguments:
        if name in RESERVED[engine]:
            found.append(((*path, name), f"is set by {RESERVED[engine][name]}: remove it from engine_args.{engine}"))
    rest = {name: value for name, value in arguments.items() if name not in RESERVED[engine]}
    check = _vllm if engine == "vllm" else _hf
    return found + [((*path, *key), message) for key, message in check(rest, model_configs)]


def _vllm(arguments: dict, model_configs) -> list[tuple[tuple, str]]:
    return _against_schema(snapshot("vllm"), arguments, "an argument of vllm.LLM", "vLLM")


def _against_schema(definitions: dict, arguments: dict, what: str, library: str) -> list[tuple[tuple, str]]:
    """Every argument a snapshot that is a JSON schema (vllm.json, hf_serve.json) does not know,
    or whose value it refuses."""
    names = definitions["properties"]
    version = f"{library} {definitions['x-version']}"
    found = []
    for name in arguments:
        if name not in names:
            found.append(((name,), f"is not {what} ({version}){did_you_mean(name, names)}"))
    known = {name: value for name, value in arguments.items() if name in names}
    validator = jsonschema.Draft7Validator(definitions)
    for error in sorted(validator.iter_errors(known), key=lambda e: list(map(str, e.absolute_path))):
        if error.context:
            error = best_match([e for e in error.context if e.validator != "type"] or error.context)
        found.append((tuple(error.absolute_path), f"{error.message} ({version})"))
    return found


def server_problems(engine: str, arguments: Mapping) -> list[tuple[tuple, str]]:
    """(key path below the engine's entry, message) for every server argument the engine's server
    would refuse: vLLM's server takes vllm.LLM's engine arguments as flags, transformers' server
    the options of `transformers serve`."""
    found = [
        ((name,), f"is set by {SERVER_RESERVED[engine][name]}: remove it")
        for name in arguments
        if name in SERVER_RESERVED[engine]
    ]
    rest = {name: value for name, value in arguments.items() if name not in SERVER_RESERVED[engine]}
    if engine == "vllm":
        return found + _against_schema(snapshot("vllm"), rest, "an engine argument of vLLM's server", "vLLM")
    return found + _against_schema(snapshot("hf_serve"), rest, "an option of `transformers serve`", "transformers")


def axis_problems(engine: str, axes: Mapping, fixed: Mapping, check) -> list[tuple[tuple, str]]:
    """(key path below the engine's entry, message) for engine arguments given as grid axes: each a
    list of distinct values, not also a fixed argument, and every value one the engine takes
    (`check(engine, {name: value})`, the problems of a single argument)."""
    found = []
    for name, values in axes.items():
        if name in fixed:
            found.append(((name,), "is a fixed engine argument too: give it once, as an axis or as a fixed value"))
        if not isinstance(values, list) or not values:
            found.append(((name,), "an axis is a non-empty list of values"))
            continue
        seen = []
        for index, value in enumerate(values):
            if value in seen:
                found.append(((name, index), f"{value!r} is given twice"))
            seen.append(value)
            found += [((name, index, *path[1:]), message) for path, message in check(engine, {name: value})]
    return found


def _hf(arguments: dict, model_configs: Mapping[str, dict | None]) -> list[tuple[tuple, str]]:
    definitions = snapshot("hf")
    loader, common = set(definitions["from_pretrained"]), set(definitions["config_attributes"])
    known_configs = {model: set(cfg) for model, cfg in model_configs.items() if cfg is not None}
    found = []
    for name in arguments:
        if name in HF_IGNORED:
            found.append(((name,), "transformers ignores it (it is read and dropped): remove it"))
        elif name in loader or name in common:
            continue
        elif known_configs and not any(name in keys for keys in known_configs.values()):
            hint = did_you_mean(name, loader | common | set().union(*known_configs.values()))
            found.append(
                (
                    (name,),
                    f"is neither an argument of from_pretrained (transformers {definitions['x-version']}) nor a key "
                    f"of the config.json of {', '.join(sorted(known_configs))}{hint}",
                )
            )
    return found
