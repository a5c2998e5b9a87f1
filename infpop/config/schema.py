"""The config schema (workflow/schemas/config.schema.yaml): it validates, and fills defaults.

Two things jsonschema does not do as a config's reader expects:
- an integer is an integer: `8.0` in an integer axis would otherwise flow into trial file names
  (`b8.0_r0.json`); and a boolean is not a number;
- a message a user can act on: an unknown key or value gets a did-you-mean, a name that breaks a
  pattern gets the rule in words (the schema's `x-rule`), not the regular expression.

Every default filled in is remembered, so that a problem with a defaulted value can say so.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

from infpop import SCHEMA_DIR

CONFIG_SCHEMA = SCHEMA_DIR / "config.schema.yaml"


def load_schema(path: Path = CONFIG_SCHEMA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """' (did you mean 'x'?)' for the closest of `choices`, or ''."""
    if not isinstance(name, str):
        return ""
    names = {str(c).replace("-", "_").lower(): str(c) for c in choices}
    wanted = name.replace("-", "_").lower()
    close = difflib.get_close_matches(wanted, list(names), n=1, cutoff=0.7)
    if not close:  # a name cut short ('tiny' for 'tiny-llama'): the one choice that starts with it
        close = [c for c in names if c.startswith(wanted)] if len(wanted) >= 3 else []
        close = close if len(close) == 1 else []
    return f" (did you mean '{names[close[0]]}'?)" if close else ""


def key_text(path: Iterable[Any]) -> str:
    """A key path as users write it: optimise.tune.budget, batch_sizes[1]."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _is_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    return isinstance(instance, (int, float)) and not isinstance(instance, bool)


_STRICT_TYPES = jsonschema.Draft7Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})


def _validator_class():
    """Draft 7 with strict numbers, filling each property's `default` before validating it."""
    base = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=_STRICT_TYPES)
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


_Validator = _validator_class()


@lru_cache(maxsize=1)
def _schema() -> dict:
    return load_schema()


def defaults(*path: str) -> dict:
    """The defaults the schema gives the properties of the section at `path` (budget, sequential:
    what a section written as {} becomes)."""
    node = _schema()
    for name in path:
        node = node["properties"][name]
    return {name: spec["default"] for name, spec in node["properties"].items() if "default" in spec}


def validate(config: dict) -> list[tuple[tuple, str]]:
    """Validate `config` in place, filling defaults: the problems, as (key path, message)."""
    errors = sorted(_Validator(_schema()).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [describe(error) for error in errors]


def describe(error: ValidationError) -> tuple[tuple, str]:
    """(key path, message) for one schema error, descending into oneOf/anyOf to the best cause."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed) - set(_pattern_names(schema, error.instance)))
        where = f"under '{key_text(path)}'" if path else "at the top level"
        if len(extra) == 1:
            hint = did_you_mean(extra[0], allowed) or f" (allowed: {', '.join(allowed)})"
            return (*path, extra[0]), f"unknown key '{extra[0]}' {where}{hint}"
        return path, f"unknown keys {', '.join(repr(e) for e in extra)} {where} (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        return (*path, missing[0]), "is required but not given"
    if error.validator == "enum":
        choices = error.validator_value
        return path, f"{error.instance!r} is not one of {choices}{did_you_mean(error.instance, choices)}"
    if error.validator == "pattern" and "x-rule" in schema:
        return path, f"{error.instance!r} is not allowed: {schema['x-rule']}"
    if error.validator == "propertyNames":
        return path, _property_name_message(error)
    if error.validator == "type" and error.instance is None:
        return path, f"is empty (null) where {_expected(error.validator_value)} is needed"
    if error.validator == "type":
        hint = ""
        if error.validator_value == "integer" and isinstance(error.instance, float) and error.instance.is_integer():
            hint = f" (write {int(error.instance)})"
        return path, f"{error.instance!r} is not {_expected(error.validator_value)}{hint}"
    if len(path) == 2 and path[0] == "models" and error.validator == "oneOf":
        return path, (
            f"model '{path[1]}' needs exactly one source: 'hf_id' (a HuggingFace id) or "
            f"'path' (a local directory, optionally with 'build')"
        )
    if error.context:
        # Of a oneOf/anyOf's branches, the one whose type fits says what is wrong (a mapping
        # missing a key), not the branches of other types ("is not of type 'integer'").
        fitting = [e for e in error.context if e.validator != "type"] or error.context
        return describe(best_match(fitting))
    return path, error.message


def _expected(types) -> str:
    names = {
        "string": "a text",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "array": "a list",
        "object": "a mapping",
    }
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(names.get(t, t) for t in types if t != "null")


def _pattern_names(schema: dict, instance: dict) -> list[str]:
    return [name for name in instance if any(re.search(p, name) for p in schema.get("patternProperties", {}))]


def _property_name_message(error: ValidationError) -> str:
    """A key that breaks the rule for names: the key and the rule in words."""
    cause = error.context[0] if error.context else error
    rule = cause.schema.get("x-rule") if isinstance(cause.schema, dict) else None
    name = cause.instance
    if rule:
        return f"name {name!r} is not allowed: {rule}"
    if cause.validator == "enum":
        return f"{name!r} is not one of {cause.validator_value}{did_you_mean(name, cause.validator_value)}"
    return cause.message
