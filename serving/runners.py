"""In-process model runners: texts in, ``(logits, labels)`` out.

A runner owns the tokenizer and the model session, so tokenisation is part of the measured
serving cost (DESIGN.md). Every HTTP engine (and PyTriton's binding) wraps a runner; the
bench uses one directly as the in-process baseline. Tokenisation, length-grouped batching,
padding and the model calls are the study's one inference layer, :mod:`training.inference`,
which training evaluation uses too: a runner adds only loading, provider checks and metadata.

    runner = make_runner("onnxruntime", "artifacts/v0/onnx", threads=2, max_length=512)
    logits, labels = runner.predict(["int main() { … }", …])   # float32 [n, 2], int64 [n]

Runners are not thread-safe by contract: call ``predict`` from one thread at a time (the
batcher does). ONNX Runtime and PyTorch parallelise *inside* a call with their own pools.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serving.engines.base import EngineUnavailable
from serving.engines.config import PROVIDERS as ONNX_PROVIDERS
from study.paths import Paths
from training.inference import (
    Forward,
    TextEncoder,
    find_tokenizer_dir,
    infer,
    labels_of,
    onnx_forward,
    onnx_session,
    torch_forward,
)

log = logging.getLogger(__name__)

# Padded tokens per model call (TextEncoder.feeds); measured on the tiny model at 1 thread, 16-row
# batches of the test split: ORT best at 256-512 (+34 % rows/s vs one call), PyTorch at 1024-2048 (+11 %).
DEFAULT_MAX_BATCH_TOKENS = {"onnxruntime": 512, "pytorch": 1024}
RUNNER_ALIASES = {"onnx": "onnxruntime", "torch": "pytorch"}


def check_providers(providers: list[str] | tuple[str, ...]) -> None:
    """Refuse an execution provider this onnxruntime build lacks (:class:`EngineUnavailable`),
    rather than let ORT silently fall back to CPU (which would make a GPU measurement a CPU one)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    for p in providers:
        if p not in ONNX_PROVIDERS:
            raise ValueError(f"unknown execution provider {p!r}; allowed: {ONNX_PROVIDERS}")
        if p not in available:
            raise EngineUnavailable(
                f"execution provider {p} is not available in this onnxruntime build "
                f"({ort.__version__}; available: {available}); install onnxruntime-gpu on a "
                f"CUDA host or use --provider CPUExecutionProvider"
            )


@runtime_checkable
class Runner(Protocol):
    """Texts → ``(logits float32 [n, 2], labels int64 [n])``."""

    max_length: int

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise (truncate to ``max_length``, pad to the longest) and run the model."""
        ...

    def describe(self) -> dict[str, Any]:
        """Static facts for metadata/results: backend, versions, threads, provider/device…"""
        ...


class EncodedRunner:
    """What every runner shares: the study's one tokenisation and batching
    (:class:`training.inference.TextEncoder`) in front of a model call (``self.forward``)."""

    encoder: TextEncoder
    forward: Forward

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def max_batch_tokens(self) -> int | None:
        return self.encoder.max_batch_tokens

    def feeds(self, texts: list[str]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        return self.encoder.feeds(texts)

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.encoder.tokenize(texts)

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        logits = infer(self.encoder, self.forward, texts)
        return logits, labels_of(logits)


class OnnxRunner(EncodedRunner):
    """An ONNX Runtime session on ``model.onnx`` (inputs ``input_ids``/``attention_mask``,
    output ``logits``), built by :func:`training.inference.onnx_session`.

    ``providers`` are tried in order; asking for one this onnxruntime build lacks raises
    :class:`EngineUnavailable` rather than silently falling back to CPU (a silent fallback
    would make a GPU measurement a CPU one).
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        tokenizer_dir: str | os.PathLike | None = None,
        providers: list[str] | tuple[str, ...] = ("CPUExecutionProvider",),
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = 1,
        max_length: int = 512,
        allow_spinning: bool = False,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS["onnxruntime"],
    ) -> None:
        path = Path(onnx_path)
        if path.is_dir():
            path = path / "model.onnx"
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        tok_dir = find_tokenizer_dir([Path(tokenizer_dir)] if tokenizer_dir else [path.parent, Paths.model_beside(path.parent)])
        self.encoder = TextEncoder.from_dir(tok_dir, max_length, max_batch_tokens=max_batch_tokens)
        providers = list(providers) or ["CPUExecutionProvider"]
        check_providers(providers)
        self.session = onnx_session(path, providers=providers, intra_op_threads=intra_op_threads,
                                    inter_op_threads=inter_op_threads, allow_spinning=allow_spinning)
        try:
            self.forward = onnx_forward(self.session)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.onnx_path, self.allow_spinning = path, allow_spinning
        self.providers = self.session.get_providers()
        self.intra_op_threads, self.inter_op_threads = intra_op_threads, inter_op_threads

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": "onnxruntime",
            "onnxruntime_version": ort.__version__,
            "model_path": str(self.onnx_path),
            "providers": list(self.providers),
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "allow_spinning": self.allow_spinning,
            "max_length": self.max_length,
            "max_batch_tokens": self.max_batch_tokens,
        }


class TorchRunner(EncodedRunner):
    """A ``transformers`` sequence classifier loaded from safetensors, in inference mode
    (:func:`training.inference.torch_forward`)."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        device: str = "cpu",
        max_length: int = 512,
        dtype: str = "float32",
        threads: int | None = None,
        inter_op_threads: int | None = None,
        tokenizer_dir: str | os.PathLike | None = None,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS["pytorch"],
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"no HF model directory at {model_dir} (config.json missing)")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device={device!r}; allowed: cpu, cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"device cuda requested but torch {torch.__version__} sees no CUDA GPU here; "
                f"use --device cpu or run on a GPU host"
            )
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in dtypes:
            raise ValueError(f"dtype={dtype!r}; allowed: {sorted(dtypes)}")
        if threads:
            torch.set_num_threads(int(threads))
        if inter_op_threads:
            try:
                torch.set_num_interop_threads(int(inter_op_threads))
            except RuntimeError:
                # Only settable before the first parallel op in the process; keep what is set.
                log.debug("torch inter-op threads already fixed at %s", torch.get_num_interop_threads())
        tok_dir = find_tokenizer_dir([Path(tokenizer_dir)] if tokenizer_dir else [model_dir])
        self.encoder = TextEncoder.from_dir(tok_dir, max_length, max_batch_tokens=max_batch_tokens)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a server log is not a terminal
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), use_safetensors=True, dtype=dtypes[dtype]
        )
        # A compressed artifact may ask for a load-time transform (ptq-dynamic: int8 Linear).
        from training.compress.base import apply_serving_transform, read_compression

        self.compression = (read_compression(model_dir) or {}).get("method")
        self.model = apply_serving_transform(self.model, model_dir, device=device, dtype=dtype)
        self.model.to(device).eval()
        self.forward = torch_forward(self.model, device)
        self.model_dir, self.device, self.dtype = model_dir, device, dtype
        self._torch = torch

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        return {
            "backend": "pytorch",
            "torch_version": torch.__version__,
            "model_path": str(self.model_dir),
            "device": self.device,
            "dtype": self.dtype,
            "compression": self.compression,
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "max_length": self.max_length,
            "max_batch_tokens": self.max_batch_tokens,
        }


class SlowRunner:
    """Wraps a runner and sleeps ``delay_ms`` per executed batch: a diagnostic stand-in for a
    slow model, used to exercise back-pressure (503) on the tiny one. Never used in real runs."""

    def __init__(self, inner: Runner, delay_ms: float) -> None:
        self.inner, self.delay_ms = inner, float(delay_ms)
        self.max_length = inner.max_length

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay_ms / 1000.0)
        return self.inner.predict(texts)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "batch_delay_ms": self.delay_ms}


def make_runner(
    engine: str,
    path: str | os.PathLike,
    *,
    max_length: int = 512,
    threads: int | None = None,
    inter_op_threads: int | None = 1,
    provider: str | list[str] = "CPUExecutionProvider",
    device: str = "cpu",
    dtype: str = "float32",
    tokenizer_dir: str | os.PathLike | None = None,
    max_batch_tokens: int | None = None,
) -> Runner:
    """Build the runner for ``engine`` from an artifact directory (or file).

    ``engine``: ``"onnxruntime"`` (alias ``"onnx"``; ``path`` = ``<artifacts>/<v>/onnx[-int8]/``
    or a ``.onnx`` file) or ``"pytorch"`` (alias ``"torch"``; ``path`` = an HF directory such
    as ``<artifacts>/<v>/pytorch/`` or ``<artifacts>/<v>/model/``). Threads: intra-op / inter-op
    counts (None = library default). ``max_batch_tokens``: padded tokens per model call
    (None = the backend's default, :data:`DEFAULT_MAX_BATCH_TOKENS`).
    """
    kind = RUNNER_ALIASES.get(engine, engine)
    if kind not in DEFAULT_MAX_BATCH_TOKENS:
        raise ValueError(f"unknown runner engine {engine!r}; allowed: onnxruntime, pytorch")
    common = {"max_length": max_length, "inter_op_threads": inter_op_threads, "tokenizer_dir": tokenizer_dir,
              "max_batch_tokens": max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS[kind]}
    if kind == "pytorch":
        return TorchRunner(path, device=device, dtype=dtype, threads=threads, **common)
    providers = [provider] if isinstance(provider, str) else list(provider)
    # CUDA/TensorRT sessions still need the CPU provider for unsupported nodes.
    if providers and providers[-1] != "CPUExecutionProvider":
        providers.append("CPUExecutionProvider")
    return OnnxRunner(path, providers=providers, intra_op_threads=threads, **common)
