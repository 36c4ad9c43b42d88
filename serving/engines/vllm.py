"""vllm engine: vLLM's OpenAI-style server for the merged HF directory as a classification
(pooling) model. GPU-only, in its own environment (vLLM pins its own torch).

    vllm serve artifacts/<v>/pytorch --runner pooling --convert classify \\
        --served-model-name bigvul-modernbert --host 127.0.0.1 --port 8000 \\
        --max-model-len 512 --max-num-seqs 32 --dtype float32

(vLLM ≥ 0.10.1 names the mode ``--runner pooling --convert classify``; older releases used
``--task classify``: :func:`vllm_command` ``legacy_task=True``.) vLLM does its own continuous
batching, so ``max_queue_delay_ms`` has no equivalent; ``max_batch_size`` maps to
``--max-num-seqs``.

vLLM keeps its own API instead of the Open Inference Protocol (DESIGN.md): readiness
``GET /health``, inference ``POST /classify`` with ``{"model": name, "input": [texts]}`` →
``{"data": [{"index": i, "label": "safe"|"vulnerable", "probs": [p0, p1], "num_classes": 2}, …]}``.
:func:`classify_request` / :func:`parse_classify_response` are the load client's request
function for it; ``probs`` are softmax outputs, so ``log(probs)`` stands in for LOGITS (equal up
to a per-row constant, which leaves the argmax — LABEL — unchanged). Prometheus metrics are at
``GET /metrics`` (``vllm:`` series).

Where vLLM is missing or no NVIDIA GPU is visible, :meth:`Engine.check` raises
:class:`EngineUnavailable` with one line (the serve CLI prints it and exits 2). ``$VLLM_BIN``
points at a ``vllm`` executable in a separate virtual environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.engines.base import EngineSettings, EngineUnavailable

CLASSIFY_PATH = "/classify"
HEALTH_PATH = "/health"
LABEL_IDS = {"safe": 0, "vulnerable": 1}


def vllm_command(settings: EngineSettings, model_dir: Path | str, *, vllm: str = "vllm",
                 legacy_task: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The ``vllm serve`` argv for ``settings`` (pure; unit-tested)."""
    mode = ["--task", "classify"] if legacy_task else ["--runner", "pooling", "--convert", "classify"]
    return [
        vllm, "serve", str(model_dir), *mode,
        "--served-model-name", settings.model_name,
        "--host", settings.host,
        "--port", str(settings.port),
        "--max-model-len", str(settings.max_length),
        "--max-num-seqs", str(settings.max_batch_size),
        "--dtype", settings.dtype,
        *extra,
    ]


def classify_request(texts: Sequence[str], model: str = "bigvul-modernbert") -> tuple[str, dict[str, Any]]:
    """``(path, json body)`` of one classify call for ``texts`` (the load client POSTs it)."""
    if not texts:
        raise ValueError("classify_request needs at least one text")
    return CLASSIFY_PATH, {"model": model, "input": [str(t) for t in texts]}


def parse_classify_response(body: dict[str, Any], n_expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """vLLM's classify response → ``(pseudo-logits float32 [n, 2], labels int64 [n])``.

    Rows are ordered by ``index``; ``pseudo-logits = log(probs)``. The label is the argmax of
    ``probs`` (vLLM's ``label`` string, when present, must agree: a mismatch is an error).
    Raises ``ValueError`` naming what is wrong with a malformed body.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"classify response has no 'data' list of objects: {str(body)[:200]}")
    rows = sorted(data, key=lambda d: int(d.get("index", 0)))
    probs = np.asarray([r.get("probs") for r in rows], dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise ValueError(f"classify response probs have shape {probs.shape}; expected [n, 2]")
    if n_expected is not None and probs.shape[0] != n_expected:
        raise ValueError(f"classify response has {probs.shape[0]} rows for {n_expected} inputs")
    labels = probs.argmax(axis=1).astype(np.int64)
    for r, lab in zip(rows, labels, strict=True):
        name = r.get("label")
        if name in LABEL_IDS and LABEL_IDS[name] != lab:
            raise ValueError(f"row {r.get('index')}: label {name!r} disagrees with probs {r.get('probs')}")
    logits = np.log(np.clip(probs, 1e-30, None)).astype(np.float32)
    return logits, labels


def find_vllm() -> str | None:
    """The ``vllm`` executable: ``$VLLM_BIN`` or the one on PATH."""
    explicit = os.environ.get("VLLM_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("vllm")


def _gpu_count() -> int:
    try:
        import pynvml as nv

        nv.nvmlInit()
        try:
            return int(nv.nvmlDeviceGetCount())
        finally:
            nv.nvmlShutdown()
    except Exception:
        return 0


class Engine:
    """vLLM's server on the pytorch export (GPU host, separate environment)."""

    name = "vllm"
    default_format = "pytorch"
    formats = ("pytorch",)
    health_path = HEALTH_PATH

    def artifact_path(self, settings: EngineSettings) -> Path:
        return settings.format_dir(settings.format or self.default_format)

    def ports(self, settings: EngineSettings) -> list[int]:
        return [settings.port]

    def check(self, settings: EngineSettings) -> None:
        fmt = settings.format or self.default_format
        if fmt not in self.formats:
            raise ValueError(f"engine vllm serves the HF directory only; format {fmt!r} not in {list(self.formats)}")
        from training.compress.base import read_compression

        if ((read_compression(settings.model_dir()) or {}).get("serving") or {}).get("pytorch"):
            # vLLM would load the float weights and report a saving it did not serve
            raise ValueError(f"{settings.variant} is PyTorch dynamic int8 for the pytorch engine; vLLM would serve "
                             f"its float weights: use ENGINE=pytorch")
        if find_vllm() is None:
            raise EngineUnavailable(
                "vLLM is not installed here (GPU-only, own environment: run the docker/vllm image or "
                "pip install vllm in a separate venv on a CUDA host and set VLLM_BIN)"
            )
        if _gpu_count() < 1:
            raise EngineUnavailable("vLLM needs an NVIDIA GPU and none is visible here (NVML sees no device)")

    def serve(self, settings: EngineSettings) -> None:
        """Run ``vllm serve`` in the foreground; SIGINT/SIGTERM are passed on and awaited."""
        if settings.format is None:
            settings.format = self.default_format
        self.check(settings)
        model_dir = self.artifact_path(settings)
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(
                f"{model_dir} is missing; run `python -m serving.export --variant {settings.variant} --format pytorch`"
            )
        cmd = vllm_command(settings, model_dir, vllm=find_vllm() or "vllm",
                           legacy_task=os.environ.get("VLLM_LEGACY_TASK") == "1")
        proc = subprocess.Popen(cmd)

        def forward(signum, _frame):
            proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            rc = proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if rc not in (0, -signal.SIGINT, -signal.SIGTERM):
            raise RuntimeError(f"vllm serve exited with status {rc}")
