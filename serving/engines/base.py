"""The engine interface: a small protocol every serving stack implements.

An engine turns :class:`EngineSettings` into a running server that speaks the Open Inference
Protocol (DESIGN.md "Serving protocol"). ``serve`` blocks in the foreground until SIGINT/SIGTERM
and then shuts down cleanly; readiness is observed from outside via ``health_path``.

An engine that cannot run on this machine (no GPU, package missing, separate environment)
raises :class:`EngineUnavailable` with one line saying why and where it runs; the CLI prints
that line and exits non-zero instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from serving.engines.config import DEFAULT_MODEL_NAME, EngineSettings
from serving.engines.registry import FACTS, EngineFacts

__all__ = ["DEFAULT_MODEL_NAME", "Engine", "EngineSettings", "EngineUnavailable", "Registered"]


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


class Registered:
    """Mixin: an engine class takes ``default_format``, ``formats`` and ``health_path`` from its
    registry entry (:data:`serving.engines.registry.FACTS`, keyed by ``name``), never a copy,
    and binds the registry's ports. ``model_file`` is the file :meth:`artifact_path` names
    inside the format directory (None: the directory itself)."""

    name: ClassVar[str] = ""
    model_file: ClassVar[str | None] = None
    facts: ClassVar[EngineFacts]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name in FACTS:
            cls.facts = FACTS[cls.name]
            cls.default_format = cls.facts.default_format
            cls.formats = cls.facts.formats
            cls.health_path = cls.facts.health_path

    def served_format(self, settings: EngineSettings) -> str:
        """``settings.format``, or this engine's default; ``ValueError`` when it cannot serve it."""
        fmt = settings.format or self.facts.default_format
        if fmt not in self.facts.formats:
            raise ValueError(f"engine {self.name} cannot serve format {fmt!r}; allowed: {list(self.facts.formats)}")
        return fmt

    def artifact_path(self, settings: EngineSettings) -> Path:
        d = settings.format_dir(settings.format or self.facts.default_format)
        return d / self.model_file if self.model_file else d

    def ports(self, settings: EngineSettings) -> list[int]:
        """Every TCP port this engine binds (the registry's layout, its port variables applied)."""
        return self.facts.bound_ports(settings.port, os.environ)
