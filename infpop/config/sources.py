"""Where every value of a config comes from: the YAML files (with the line of each key), the
command line's `--config` overrides, or a default.

YAML is read strictly: a key given twice in one mapping is an error naming both lines (YAML
itself would keep the last one without a word), and a syntax error names the file, line and
column. Snakemake reads `--config key=value` values with YAML's BaseLoader, which makes every
nested value a string (`optimise={"tune": {"budget": 7}}` arrives as `{'tune': {'budget': '7'}}`,
`batch_sizes=[1,2]` as `['1', '2']`); the overrides are typed again here, as YAML would type
them, and each remembers the argument it came from.

Files and overrides are merged as Snakemake merges them: mappings key by key, any other value
replaced whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Origin:
    """Where a value was set: a file and line, a command-line argument, or nowhere (a default)."""

    file: str | None = None
    line: int | None = None
    argument: str | None = None

    def describe(self) -> str:
        if self.argument:
            return f"--config {self.argument}"
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""


class SourceError(ValueError):
    """A config source that cannot be read at all; `problems` are (where, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))
        self.problems = problems


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys instead of keeping the last silently."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor says so below
            continue
        if first is not None:
            loader.duplicates.append((line, f"key '{key}' is given twice in one mapping (first at line {first})"))
        else:
            seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _lines(node: yaml.Node, prefix: tuple, into: dict) -> None:
    """Record the line of every key and sequence item under `node`."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            into.setdefault(path, key_node.start_mark.line + 1)
            _lines(value_node, path, into)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            into.setdefault(path, item.start_mark.line + 1)
            _lines(item, path, into)


def read_yaml(path: str | Path) -> tuple[dict, dict[tuple, int]]:
    """(the mapping in a YAML file, {key path: line}). SourceError names the file, and the line of
    every duplicate key or of the syntax error."""
    name = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SourceError([(name, "config file not found")]) from None
    except OSError as exc:
        raise SourceError([(name, f"cannot read the config file: {exc.strerror}")]) from None
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
        lines: dict[tuple, int] = {}
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _lines(node, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise SourceError([(where, f"not valid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise SourceError([(name, f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise SourceError(
            [(f"{name}:{line}", message + ": YAML would keep only the last") for line, message in loader.duplicates]
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceError([(name, "the config must be a mapping of keys to values")])
    return data, lines


def typed(value: Any) -> Any:
    """A `--config` value as YAML types it: Snakemake's parser leaves nested values as strings."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            return value
    if isinstance(value, Mapping):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(item) for item in value]
    return value


def _argument(key: str, value: Any) -> str:
    """A short spelling of the `--config` argument that set `key`, for messages."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("\n...").strip()
    return f"{key}={text if len(text) <= 60 else text[:57] + '...'}"


@dataclass
class Sources:
    """The merged raw config and the origin of each of its key paths."""

    raw: dict = field(default_factory=dict)
    origins: dict[tuple, Origin] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def add_mapping(self, data: Mapping, origin_of) -> None:
        """Merge `data` (as Snakemake's update_config does); `origin_of(path)` gives each path's origin."""
        _merge(self.raw, data, (), origin_of, self.origins)

    def add_file(self, path: str | Path) -> None:
        data, lines = read_yaml(path)
        self.files.append(str(path))
        self.add_mapping(data, lambda p: Origin(file=str(path), line=lines.get(p)))

    def add_overrides(self, overrides: Mapping[str, Any]) -> None:
        """The `--config` overrides (as Snakemake parsed them), typed again."""
        for key, value in overrides.items():
            value = typed(value)
            argument = _argument(key, value)
            self.add_mapping({key: value}, lambda p, a=argument: Origin(argument=a))

    def origin(self, path: Iterable) -> Origin | None:
        """Where the value at `path` (or, failing that, its nearest parent) was set; None for a
        value no source gave (a default)."""
        path = tuple(path)
        while path:
            if path in self.origins:
                return self.origins[path]
            path = path[:-1]
        return None

    def given(self, path: Iterable) -> bool:
        """Whether a source set the value at `path` itself (not a default)."""
        return tuple(path) in self.origins


def _merge(into: dict, data: Mapping, prefix: tuple, origin_of, origins: dict) -> None:
    for key, value in data.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            origins.setdefault(path, origin_of(path))
            _merge(into[key], value, path, origin_of, origins)
            continue
        into[key] = copy.deepcopy(value)
        for old in [p for p in origins if p[: len(path)] == path]:
            del origins[old]
        _mark(value, path, origin_of, origins)


def _mark(value: Any, path: tuple, origin_of, origins: dict) -> None:
    origins[path] = origin_of(path)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _mark(item, (*path, key), origin_of, origins)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _mark(item, (*path, index), origin_of, origins)
