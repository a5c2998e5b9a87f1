"""Inference engines behind one small adapter interface (see base.Engine).

Each engine lives in its own module `infpop.measure.engines.<name>` exposing `Engine`; adding one means
a new module and a new name in the config schema's engine list.
"""

from __future__ import annotations

import importlib

from infpop.measure.engines.base import Engine, EngineSpec, GenerationResult


def load_engine_class(name: str) -> type[Engine]:
    """The Engine class of engine `name`, imported only when asked for (vLLM is heavy)."""
    try:
        module = importlib.import_module(f"infpop.measure.engines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"infpop.measure.engines.{name}":
            raise ValueError(f"unknown engine '{name}'") from None
        raise
    return module.Engine


__all__ = ["Engine", "EngineSpec", "GenerationResult", "load_engine_class"]
