"""Engine registry: name → ``"module:attribute"``, imported only when that engine is chosen.

Choosing one engine never imports the others, so GPU-only or separately installed stacks
(vLLM, TensorRT) never break the CPU engines.
"""

from __future__ import annotations

import importlib

from serving.engines.base import Engine, EngineSettings, EngineUnavailable

ENGINES: dict[str, str] = {
    "onnxruntime": "serving.engines.onnxruntime:Engine",
    "pytorch": "serving.engines.pytorch:Engine",
    "triton": "serving.engines.triton:Engine",
    "vllm": "serving.engines.vllm:Engine",
}

__all__ = ["ENGINES", "Engine", "EngineSettings", "EngineUnavailable", "get_engine"]


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
