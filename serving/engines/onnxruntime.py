"""onnxruntime engine: the shared HTTP server (serving/server.py) around an ONNX Runtime session.

Serves ``artifacts/<variant>/onnx/model.onnx`` (default) or ``onnx-int8/model.onnx``. Settings
read: ``provider`` (CPUExecutionProvider default; CUDA/TensorRT need an onnxruntime-gpu build,
else a clear :class:`EngineUnavailable`), ``threads`` (intra-op), ``inter_op_threads``,
``max_length`` and the batching/queue/body limits.
"""

from __future__ import annotations

from serving.engines.base import EngineSettings, EngineUnavailable, Registered
from serving.server import RunnerEngine


class Engine(Registered, RunnerEngine):
    """Formats, ports and health path: the registry's (serving/engines/registry.py)."""

    name = "onnxruntime"
    model_file = "model.onnx"
    runner_kind = "onnxruntime"

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
