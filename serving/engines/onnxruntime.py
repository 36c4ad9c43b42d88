"""onnxruntime engine: the shared HTTP server (serving/server.py) around an ONNX Runtime session.

Serves ``artifacts/<variant>/onnx/model.onnx`` (default) or ``onnx-int8/model.onnx``. Settings
read: ``provider`` (CPUExecutionProvider default; CUDA/TensorRT need an onnxruntime-gpu build,
else a clear :class:`EngineUnavailable`), ``threads`` (intra-op), ``inter_op_threads``,
``max_length`` and the batching/queue/body limits.
"""

from __future__ import annotations

from pathlib import Path

from serving.engines.base import EngineSettings, EngineUnavailable
from serving.server import RunnerEngine


class Engine(RunnerEngine):
    name = "onnxruntime"
    default_format = "onnx"
    formats = ("onnx", "onnx-int8")
    runner_kind = "onnxruntime"

    def artifact_path(self, settings: EngineSettings) -> Path:
        return settings.format_dir(settings.format or self.default_format) / "model.onnx"

    def check(self, settings: EngineSettings) -> None:
        super().check(settings)
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise EngineUnavailable(
                "engine onnxruntime needs the onnxruntime package (pip install onnxruntime)"
            ) from None
        from serving.runners import check_providers

        check_providers([settings.provider])
