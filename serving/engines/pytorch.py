"""pytorch engine (the baseline): the shared HTTP server around the ``transformers`` model.

Serves ``artifacts/<variant>/pytorch/`` (the HF directory the export writes); when that export
is absent it serves ``artifacts/<variant>/model/`` directly, which holds the same safetensors.
Settings read: ``device`` (cpu | cuda), ``dtype``, ``threads`` (torch intra-op),
``inter_op_threads``, ``max_length`` and the batching/queue/body limits.
"""

from __future__ import annotations

from pathlib import Path

from serving.engines.base import EngineSettings, EngineUnavailable, Registered
from serving.server import RunnerEngine


class Engine(Registered, RunnerEngine):
    """Formats, ports and health path: the registry's (serving/engines/registry.py)."""

    name = "pytorch"
    runner_kind = "pytorch"

    def artifact_path(self, settings: EngineSettings) -> Path:
        exported = settings.format_dir("pytorch")
        if (exported / "config.json").exists() or not (settings.model_dir() / "config.json").exists():
            return exported
        return settings.model_dir()

    def check(self, settings: EngineSettings) -> None:
        super().check(settings)
        if settings.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise EngineUnavailable(
                    f"device cuda requested but torch {torch.__version__} sees no CUDA GPU here; "
                    f"use --device cpu or run on a GPU host"
                )
