"""The experiment config: read from YAML files and the command line, validated, defaults filled
(loader.py; where each value came from: sources.py; the schema: schema.py; the checks per
section: checks.py; the engines' own arguments: engine_args.py)."""

from infpop.config.loader import ConfigError, load_config
from infpop.config.schema import CONFIG_SCHEMA, load_schema

__all__ = ["CONFIG_SCHEMA", "ConfigError", "load_config", "load_schema"]
