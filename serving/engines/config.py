"""Typed, validated settings shared by every engine (one dataclass, one way to build it).

An engine reads only the fields it needs; the rest are ignored by it (documented per engine in
docs/serving.md). ``EngineSettings.from_dict`` rejects unknown keys and wrong types with a message
that names the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One definition of the formats, shared with the exporter; the layout is study.paths'.
from serving.export.base import FORMATS
from study.paths import Paths, artifacts_root

DEFAULT_MODEL_NAME = "bigvul-modernbert"
PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float16", "bfloat16")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class EngineSettings:
    """Everything an engine needs to serve one artifact.

    ``format`` None means "the engine's default format". Sizes are in requests (queue), rows
    (batch) and bytes (body); times carry their unit in the name.
    """

    engine: str = "onnxruntime"
    variant: str = "v0"
    format: str | None = None
    artifacts_dir: str = field(default_factory=lambda: str(artifacts_root()))  # $ARTIFACTS, else artifacts/
    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = DEFAULT_MODEL_NAME
    # Dynamic batching: a batch closes when it holds max_batch_size rows or when the oldest
    # request in it has waited max_queue_delay_ms.
    max_batch_size: int = 32
    max_queue_delay_ms: float = 5.0
    # Admission control: requests waiting (not yet in a running batch) beyond this get a 503.
    max_queue_size: int = 256
    # Admission by deadline (onnxruntime/pytorch servers): a request that does not fit in the
    # next batch is admitted only if its expected queue wait (rest of the running batch + rows
    # ahead × recent batch time ÷ recent rows per batch) is at most this; else 503 +
    # Retry-After, before its body is read; a batch holds at most the rows that run in half of
    # it (serving.batcher.Batcher.batch_cap), so an admitted request spends ~1.5 × this in the
    # server. 0 = off (only max_queue_size bounds the queue, batches fill max_batch_size).
    # 30 ms: under 4× overload on 2 shared cores the tiny model's accepted p99 stays within
    # 3 × its 4-user p99 (docs/serving.md, "Overhead and overload").
    max_queue_wait_ms: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    # Threads: intra-op (ORT intra_op_num_threads / torch.set_num_threads), inter-op.
    # None = the library default (all physical cores).
    threads: int | None = None
    inter_op_threads: int | None = 1
    provider: str = "CPUExecutionProvider"  # onnxruntime only
    device: str = "cpu"  # pytorch only
    dtype: str = "float32"  # pytorch only
    max_length: int = 512  # tokenizer truncation (tokens)
    # Rows of an executed batch are sorted by length and run in model calls of at most this
    # many padded tokens (rows × longest row). None = the backend's default (runners.py).
    max_batch_tokens: int | None = None
    # Test/diagnostic knob: sleep this long inside every executed batch (simulates a slow
    # model so that back-pressure can be exercised on a fast tiny one). 0 in real runs.
    batch_delay_ms: float = 0.0
    log_level: str = "warning"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> EngineSettings:
        """Raise ``ValueError`` naming the bad key and what is allowed."""

        def need(cond: bool, key: str, allowed: str) -> None:
            if not cond:
                raise ValueError(
                    f"engine setting {key}={getattr(self, key)!r} is invalid; allowed: {allowed}"
                )

        need(self.format is None or self.format in FORMATS, "format", f"{FORMATS} or None")
        need(0 <= int(self.port) <= 65535, "port", "0..65535")
        need(bool(self.model_name) and "/" not in self.model_name, "model_name", "a name without '/'")
        need(self.max_batch_size >= 1, "max_batch_size", ">= 1")
        need(self.max_queue_delay_ms >= 0, "max_queue_delay_ms", ">= 0")
        need(self.max_queue_size >= 1, "max_queue_size", ">= 1")
        need(self.max_queue_wait_ms >= 0, "max_queue_wait_ms", ">= 0 (0 = no deadline)")
        need(self.max_body_bytes >= 1024, "max_body_bytes", ">= 1024")
        need(self.threads is None or self.threads >= 1, "threads", ">= 1 or None")
        need(
            self.inter_op_threads is None or self.inter_op_threads >= 1,
            "inter_op_threads",
            ">= 1 or None",
        )
        need(self.provider in PROVIDERS, "provider", str(PROVIDERS))
        need(self.device in DEVICES, "device", str(DEVICES))
        need(self.dtype in DTYPES, "dtype", str(DTYPES))
        need(8 <= self.max_length <= 1 << 16, "max_length", "8..65536")
        need(
            self.max_batch_tokens is None or self.max_batch_tokens >= 1,
            "max_batch_tokens",
            ">= 1 or None (the backend's default)",
        )
        need(self.batch_delay_ms >= 0, "batch_delay_ms", ">= 0")
        need(self.log_level in LOG_LEVELS, "log_level", "|".join(LOG_LEVELS))
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EngineSettings:
        """Build from a mapping (YAML, CLI); unknown keys and wrong types are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown engine settings {unknown}; valid: {sorted(fields)}")
        casts = {"int": int, "float": float, "str": str}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            type_name = str(fields[key].type).split("|")[0].strip()
            if value is None or type_name not in casts:
                clean[key] = value
                continue
            if type_name != "str" and isinstance(value, bool):
                raise ValueError(f"engine setting {key}={value!r}: expected {type_name}")
            try:
                clean[key] = casts[type_name](value)
            except (TypeError, ValueError):
                raise ValueError(f"engine setting {key}={value!r}: expected {type_name}") from None
        return cls(**clean)

    # -- paths ---------------------------------------------------------------------------
    @property
    def paths(self) -> Paths:
        """The study's layout (:class:`study.paths.Paths`) with ``artifacts_dir`` as its root."""
        return Paths.from_env(artifacts=self.artifacts_dir)

    @property
    def root(self) -> Path:
        """``artifacts_dir`` resolved against the repository root when relative."""
        return self.paths.artifacts

    def model_dir(self) -> Path:
        """``<artifacts>/<variant>/model/``: the trained, merged HF directory."""
        return self.paths.model_dir(self.variant)

    def format_dir(self, fmt: str | None = None) -> Path:
        """``<artifacts>/<variant>/<format>/``: one export."""
        fmt = fmt or self.format
        if fmt is None:
            raise ValueError("format is not set (the engine fills in its default format)")
        return self.paths.format_dir(self.variant, fmt)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
