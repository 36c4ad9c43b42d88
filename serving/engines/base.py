"""The engine interface: a small protocol every serving stack implements.

An engine turns :class:`EngineSettings` into a running server that speaks the Open Inference
Protocol (DESIGN.md "Serving protocol"). ``serve`` blocks in the foreground until SIGINT/SIGTERM
and then shuts down cleanly; readiness is observed from outside via ``health_path``.

An engine that cannot run on this machine (no GPU, package missing, separate environment)
raises :class:`EngineUnavailable` with one line saying why and where it runs; the CLI prints
that line and exits non-zero instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from serving.engines.config import DEFAULT_MODEL_NAME, EngineSettings

__all__ = ["DEFAULT_MODEL_NAME", "Engine", "EngineSettings", "EngineUnavailable"]


class EngineUnavailable(RuntimeError):
    """This engine (or a requested option of it) cannot run here; the message says why.

    Raised by ``Engine.check``/``Engine.serve`` and by runners (e.g. an execution provider that
    this onnxruntime build lacks). The message is one line meant for a human.
    """


@runtime_checkable
class Engine(Protocol):
    """One serving stack. Implementations live in ``serving/engines/<name>.py`` as ``Engine``."""

    #: Registry name ("onnxruntime", "pytorch", "triton", "vllm").
    name: str
    #: Format served when the user gives none ("onnx", "pytorch", …).
    default_format: str
    #: Formats this engine can serve.
    formats: tuple[str, ...]
    #: Path polled (GET, expect 200) to decide the server is ready.
    health_path: str

    def artifact_path(self, settings: EngineSettings) -> Path:
        """The file or directory ``serve`` loads; the CLI trains/exports when it is missing."""
        ...

    def ports(self, settings: EngineSettings) -> list[int]:
        """Every TCP port ``serve`` binds; the CLI refuses to start when one is taken."""
        ...

    def check(self, settings: EngineSettings) -> None:
        """Raise :class:`EngineUnavailable` if this engine cannot serve ``settings`` here.

        Cheap (no model load); called before anything is built.
        """
        ...

    def serve(self, settings: EngineSettings) -> None:
        """Serve in the foreground until SIGINT/SIGTERM, then shut down cleanly."""
        ...
