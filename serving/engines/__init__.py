"""Engine registry: each engine's facts (:mod:`serving.engines.registry`) and its
``"module:attribute"``, imported only when that engine is chosen.

Choosing one engine never imports the others, so GPU-only or separately installed stacks
(vLLM, TensorRT) never break the CPU engines. ``python -m serving.engines describe ENGINE``
prints the facts (default format, ports, health path, metrics URL, request counters, protocol).
"""

from __future__ import annotations

import importlib

from serving.engines.base import Engine, EngineSettings, EngineUnavailable
from serving.engines.registry import FACTS, EngineFacts, facts

ENGINES: dict[str, str] = {name: f.module for name, f in FACTS.items()}

__all__ = ["ENGINES", "FACTS", "Engine", "EngineFacts", "EngineSettings", "EngineUnavailable", "facts",
           "get_engine"]


def get_engine(name: str) -> Engine:
    """Instantiate the engine registered as ``name``.

    Raises ``ValueError`` for an unknown name (listing the valid ones) and
    :class:`EngineUnavailable` when its module cannot be imported here.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {sorted(ENGINES)}")
    module_name, attr = ENGINES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
            raise EngineUnavailable(f"engine {name!r} is not implemented yet ({module_name} is missing)") from None
        raise EngineUnavailable(
            f"engine {name!r} needs the Python package {e.name!r}, which is not installed here"
        ) from None
    return getattr(module, attr)()
