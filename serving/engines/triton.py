"""triton engine: a real Triton Inference Server — nvidia-pytriton's bundled ``tritonserver`` —
serving ``bigvul-modernbert`` with an ONNX Runtime session behind it.

PyTriton starts ``tritonserver`` (HTTP + gRPC + metrics) as a child process and binds a Python
callable as a python-backend model: Triton's own dynamic batcher groups requests (up to
``max_batch_size`` rows, waiting at most ``max_queue_delay_ms``), the callable tokenises and runs
the ONNX export through :class:`serving.runners.OnnxRunner` — the same tokenisation and session
as the onnxruntime engine, so the two differ only in the serving stack. Same model name, same
tensors (DESIGN.md): ``TEXT`` BYTES [batch, 1] → ``LOGITS`` FP32 [batch, 2], ``LABEL`` INT64
[batch]. (Triton's model metadata lists LABEL as [-1, 1] because a config needs non-empty dims;
responses carry [batch], the shape the callable returns.)

Ports (Triton's own layout): HTTP on ``settings.port``; gRPC on ``$TRITON_GRPC_PORT`` or
``port + 1``; Prometheus metrics on ``$TRITON_METRICS_PORT`` or ``port + 2``. All bind
``settings.host`` (127.0.0.1 by default).

Metrics — the load test reads Triton's, not ``inference_requests_total``
(``GET http://<host>:<metrics port>/metrics``, see :func:`metrics_url`, :func:`read_metrics`):

* ``nv_inference_request_success{model="bigvul-modernbert"}`` — successful requests (the server
  count the load test compares with Locust's);
* ``nv_inference_request_failure{reason=…}`` — failed ones (``REJECTED`` = queue full);
* ``nv_inference_count`` — rows inferred; ``nv_inference_exec_count`` — executed batches, so
  the mean executed batch size is ``nv_inference_count / nv_inference_exec_count``;
* ``nv_inference_queue_duration_us``, ``nv_inference_compute_infer_duration_us`` — cumulative µs.

``POST /v2/repository/index`` lists the model (PyTriton runs with a local model store for that);
the repository-control, statistics and model-config endpoints are open to loopback clients,
shared-memory/trace/logging stay token-protected (PyTriton's default token).

The *generated* model repository (``python -m serving.triton_repo``) is the container path:
NVIDIA's tritonserver image with native onnxruntime/tensorrt backends (docs/export-and-triton.md).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import sysconfig
from typing import Any

import numpy as np

from serving.engines.base import EngineSettings, EngineUnavailable, Registered
from serving.engines.registry import serve_time_ports
from study.prometheus import samples

log = logging.getLogger(__name__)



def grpc_port(settings: EngineSettings) -> int:
    """The registry's gRPC port for ``settings.port`` (``port + 1``, or ``$TRITON_GRPC_PORT``)."""
    return serve_time_ports("triton", settings.port)["grpc"]


def metrics_port(settings: EngineSettings) -> int:
    """The registry's metrics port (``port + 2``, or ``$TRITON_METRICS_PORT``)."""
    return serve_time_ports("triton", settings.port)["metrics"]


def metrics_url(settings: EngineSettings) -> str:
    """Where Triton's Prometheus metrics are served for this engine's settings."""
    return f"http://{settings.host}:{metrics_port(settings)}/metrics"


def parse_metrics(text: str, model: str = "bigvul-modernbert") -> dict[str, Any]:
    """Triton's Prometheus text → the counters the load test needs (pure function).

    Returns ``{"requests_success", "requests_failed", "requests_rejected", "inference_count",
    "exec_count", "mean_batch_size", "queue_us", "compute_infer_us"}`` summed over versions of
    ``model``; ``mean_batch_size`` is None before the first execution.
    """
    sums: dict[str, float] = {}
    rejected = 0.0
    for name, labels, value in samples(text):
        if labels.get("model") != model:
            continue
        name = name.removesuffix("_total")  # the parser names counter samples <family>_total
        sums[name] = sums.get(name, 0.0) + value
        if name == "nv_inference_request_failure" and labels.get("reason") == "REJECTED":
            rejected += value
    exec_count = sums.get("nv_inference_exec_count", 0.0)
    inferred = sums.get("nv_inference_count", 0.0)
    return {
        "requests_success": int(sums.get("nv_inference_request_success", 0)),
        "requests_failed": int(sums.get("nv_inference_request_failure", 0)),
        "requests_rejected": int(rejected),
        "inference_count": int(inferred),
        "exec_count": int(exec_count),
        "mean_batch_size": inferred / exec_count if exec_count else None,
        "queue_us": sums.get("nv_inference_queue_duration_us", 0.0),
        "compute_infer_us": sums.get("nv_inference_compute_infer_duration_us", 0.0),
    }


def read_metrics(settings: EngineSettings, timeout_s: float = 5.0) -> dict[str, Any]:
    """GET the metrics endpoint and :func:`parse_metrics` it for ``settings.model_name``."""
    import urllib.request

    with urllib.request.urlopen(metrics_url(settings), timeout=timeout_s) as r:
        return parse_metrics(r.read().decode(), settings.model_name)


def _ensure_libpython_on_path() -> None:
    """PyTriton's tritonserver links libpython; pyenv/conda keep it outside the default search
    path. The child inherits our environment, so adding it here is enough."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in current.split(os.pathsep):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, current) if p)


def _decode(texts: np.ndarray) -> list[str]:
    """TEXT rows → str; bytes that are not UTF-8 are a client error naming the row."""
    out = []
    for i, t in enumerate(np.asarray(texts, dtype=object).reshape(-1)):
        if isinstance(t, (bytes, np.bytes_)):
            try:
                out.append(bytes(t).decode("utf-8"))
            except UnicodeDecodeError as e:
                from pytriton.exceptions import PyTritonBadParameterError

                raise PyTritonBadParameterError(f"TEXT row {i} is not valid UTF-8: {e}") from None
        else:
            out.append(str(t))
    return out


def make_infer_func(runner):
    """The PyTriton callable: batched TEXT → LOGITS, LABEL (one runner call per Triton batch).

    PyTriton's ``@batch`` concatenates the requests Triton's dynamic batcher grouped and splits
    the outputs back; a request with bad bytes fails its whole executed batch (PyTriton has no
    per-request errors) with a 400 naming the row.
    """
    from pytriton.decorators import batch

    @batch
    def infer(TEXT: np.ndarray) -> dict[str, np.ndarray]:  # noqa: N803 (Triton tensor name)
        logits, labels = runner.predict(_decode(TEXT))
        return {"LOGITS": np.ascontiguousarray(logits, dtype=np.float32),
                "LABEL": np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)}

    return infer


class Engine(Registered):
    """Triton (PyTriton's bundled server) around the ONNX export; formats, ports and health
    path are the registry's (serving/engines/registry.py)."""

    name = "triton"
    model_file = "model.onnx"

    def check(self, settings: EngineSettings) -> None:
        try:
            self.served_format(settings)
        except ValueError as e:
            raise ValueError(f"{e} (tensorrt plans: the tritonserver container with the generated repository)") from None
        try:
            import pytriton  # noqa: F401
        except ImportError:
            raise EngineUnavailable(
                "engine triton needs nvidia-pytriton (pip install nvidia-pytriton; Linux x86-64/arm64)"
            ) from None
        if sys.platform != "linux":
            raise EngineUnavailable("engine triton (PyTriton's bundled tritonserver) runs on Linux only")
        ports = list(serve_time_ports(self.name, settings.port).values())
        if len(set(ports)) != 3:
            raise ValueError(f"triton needs three distinct ports (http, grpc, metrics), got {ports}")

    def serve(self, settings: EngineSettings) -> None:
        """Load the runner, start tritonserver, bind the model, block until SIGINT/SIGTERM."""
        if settings.format is None:
            settings.format = self.default_format
        self.check(settings)
        path = self.artifact_path(settings)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing; run `python -m serving.export --variant {settings.variant} "
                f"--format {settings.format}`"
            )
        _ensure_libpython_on_path()
        from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
        from pytriton.triton import (
            Triton,
            TritonConfig,
            TritonLifecyclePolicy,
            TritonSecurityConfig,
        )

        from serving.runners import SlowRunner, make_runner

        runner = make_runner("onnxruntime", path, max_length=settings.max_length, threads=settings.threads,
                             inter_op_threads=settings.inter_op_threads, provider=settings.provider)
        if settings.batch_delay_ms > 0:
            runner = SlowRunner(runner, settings.batch_delay_ms)
        runner.predict(["int main(void) { return 0; }"])  # warm: the first request is not a cold one

        config = TritonConfig(
            http_address=settings.host, http_port=settings.port,
            grpc_address=settings.host, grpc_port=grpc_port(settings),
            metrics_address=settings.host, metrics_port=metrics_port(settings),
            allow_metrics=True, allow_cpu_metrics=True,
            exit_timeout_secs=5, log_verbose=1 if settings.log_level == "debug" else 0,
        )
        triton = Triton(
            config=config,
            # A local model store makes the model visible to POST /v2/repository/index.
            triton_lifecycle_policy=TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True),
            security_config=TritonSecurityConfig(restricted_endpoints=["shared-memory", "trace", "logging"]),
        )
        triton.bind(
            model_name=settings.model_name,
            infer_func=make_infer_func(runner),
            inputs=[Tensor(name="TEXT", dtype=bytes, shape=(1,))],
            # LABEL: dims (1,) in the config (Triton needs non-empty dims); the callable returns
            # [batch] and Triton passes that shape on — strict=False lets it.
            outputs=[Tensor(name="LOGITS", dtype=np.float32, shape=(2,)),
                     Tensor(name="LABEL", dtype=np.int64, shape=(1,))],
            config=ModelConfig(
                max_batch_size=settings.max_batch_size,
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=int(settings.max_queue_delay_ms * 1000),
                    default_queue_policy=QueuePolicy(max_queue_size=settings.max_queue_size),
                ),
            ),
            strict=False,
        )

        def _stop(signum, _frame):  # SIGTERM behaves like Ctrl-C: Triton.serve stops cleanly
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _stop)
        log.info("triton: http %s:%d grpc %d metrics %d", settings.host, settings.port,
                 grpc_port(settings), metrics_port(settings))
        try:
            triton.serve()
        except KeyboardInterrupt:
            pass
        finally:
            triton.stop()
            signal.signal(signal.SIGTERM, previous)
