"""In-process model runners: texts in, ``(logits, labels)`` out.

A runner owns the tokenizer and the model session, so tokenisation is part of the measured
serving cost (DESIGN.md). Every HTTP engine (and PyTriton's binding) wraps a runner; the
bench uses one directly as the in-process baseline.

    runner = make_runner("onnxruntime", "artifacts/v0/onnx", threads=2, max_length=512)
    logits, labels = runner.predict(["int main() { … }", …])   # float32 [n, 2], int64 [n]

Runners are not thread-safe by contract: call ``predict`` from one thread at a time (the
batcher does). ONNX Runtime and PyTorch parallelise *inside* a call with their own pools.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serving.engines.base import EngineUnavailable
from serving.engines.config import PROVIDERS as ONNX_PROVIDERS

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Padded tokens per model call (feeds()); measured on the tiny model at 1 thread, 16-row batches
# of the test split: ORT best at 256-512 (+34 % rows/s vs one call), PyTorch at 1024-2048 (+11 %).
DEFAULT_MAX_BATCH_TOKENS = {"onnxruntime": 512, "pytorch": 1024}


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


def _find_tokenizer_dir(candidates: list[Path]) -> Path:
    for c in candidates:
        if c is not None and any((c / f).exists() for f in TOKENIZER_FILES):
            return c
    raise FileNotFoundError(
        "no tokenizer found (looked for tokenizer.json/tokenizer_config.json in "
        f"{[str(c) for c in candidates if c is not None]})"
    )


class _Tokenising:
    """Shared tokenisation: truncation to ``max_length`` tokens, padding to the longest row.

    Uses the Rust ``tokenizers`` library on ``tokenizer.json`` directly (what
    ``PreTrainedTokenizerFast`` wraps), so the onnxruntime server never imports torch or
    transformers; falls back to ``AutoTokenizer`` for directories without a ``tokenizer.json``.
    """

    def __init__(self, tokenizer_dir: str | os.PathLike, max_length: int) -> None:
        if max_length < 8:
            raise ValueError(f"max_length={max_length} is too small; allowed: >= 8 tokens")
        self.tokenizer_dir = Path(tokenizer_dir)
        config_path = self.tokenizer_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        model_max = config.get("model_max_length")
        # Never ask for more positions than the tokenizer (and so the model) was built for.
        if isinstance(model_max, int) and 0 < model_max < 1_000_000:
            max_length = min(max_length, model_max)
        self.max_length = int(max_length)
        self._fast = None
        self._hf = None
        if (self.tokenizer_dir / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.tokenizer_dir / "tokenizer.json"))
            pad_token = config.get("pad_token") or "[PAD]"
            if isinstance(pad_token, dict):  # older configs store an AddedToken dict
                pad_token = pad_token.get("content", "[PAD]")
            pad_id = tok.token_to_id(pad_token)
            if pad_id is None:
                raise ValueError(f"{self.tokenizer_dir}: pad token {pad_token!r} not in the vocabulary")
            tok.enable_truncation(max_length=self.max_length)
            tok.no_padding()  # padded here, per length group (feeds())
            self._fast, self.pad_id = tok, pad_id
        else:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(str(self.tokenizer_dir))

    #: padded tokens (rows × longest row) per model call; see :meth:`feeds`
    max_batch_tokens = 1024

    def _pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def feeds(self, texts: list[str]) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Tokenise the whole batch once, then split it into model calls of similar length:
        ``[(row indices, {input_ids, attention_mask}), …]``.

        Rows are sorted by token count and cut greedily into groups whose padded size (rows ×
        longest row) stays within ``max_batch_tokens``. On CPU a batch of mixed lengths pads
        every row to the longest, and a big padded batch also falls out of cache (measured on
        the tiny model, 256 tokens: 5.9 ms/row at 16 rows vs 3.8 at 1 or 4); grouped, rows
        cost about what they would alone while short ones still share calls.
        """
        if not texts:
            raise ValueError("predict() needs at least one text")
        if self._fast is None:
            return [(np.arange(len(texts)), self.tokenize(texts))]
        rows = [e.ids for e in self._fast.encode_batch(list(texts))]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        groups: list[list[int]] = [[]]
        for i in order:  # ascending: the row being added is the group's longest
            if groups[-1] and (len(groups[-1]) + 1) * len(rows[i]) > self.max_batch_tokens:
                groups.append([])
            groups[-1].append(i)
        return [(np.asarray(g), self._pad([rows[i] for i in g])) for g in groups]

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The whole batch padded to its longest row (one model call)."""
        if not texts:
            raise ValueError("predict() needs at least one text")
        if self._fast is not None:
            return self._pad([e.ids for e in self._fast.encode_batch(list(texts))])
        enc = self._hf(
            list(texts), truncation=True, max_length=self.max_length, padding="longest",
            return_tensors="np",
        )
        return {
            "input_ids": enc["input_ids"].astype(np.int64, copy=False),
            "attention_mask": enc["attention_mask"].astype(np.int64, copy=False),
        }


def _scatter(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Rows of the per-group outputs put back in request order (float32 [n, labels])."""
    logits = np.empty((n, parts[0][1].shape[-1]), dtype=np.float32)
    for idx, out in parts:
        logits[idx] = out
    return logits


def _labels(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=-1).astype(np.int64)


class OnnxRunner(_Tokenising):
    """An ONNX Runtime session on ``model.onnx`` (inputs ``input_ids``/``attention_mask``,
    output ``logits``).

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
    ) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if path.is_dir():
            path = path / "model.onnx"
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        tok_dir = _find_tokenizer_dir(
            [Path(tokenizer_dir)] if tokenizer_dir else [path.parent, path.parent.parent / "model"]
        )
        super().__init__(tok_dir, max_length)

        providers = list(providers) or ["CPUExecutionProvider"]
        check_providers(providers)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            opts.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads:
            opts.inter_op_num_threads = int(inter_op_threads)
        # ORT's intra-op threads spin-wait for work by default: between requests they burn CPU
        # (measured here: ~45 ms CPU per request vs ~5-25 for PyTorch), which an energy study
        # would charge to the engine. Off unless asked for, and recorded in describe().
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
        self.allow_spinning = allow_spinning
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.onnx_path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        missing = [n for n in self.input_names if n not in ("input_ids", "attention_mask")]
        if missing or "input_ids" not in self.input_names:
            raise ValueError(
                f"{path}: unexpected ONNX inputs {self.input_names}; expected input_ids "
                f"[+ attention_mask]"
            )
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]
        self.providers = self.session.get_providers()
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for idx, feed in self.feeds(texts):
            feed = {k: v for k, v in feed.items() if k in self.input_names}
            (out,) = self.session.run([self.output_name], feed)
            parts.append((idx, out))
        logits = _scatter(parts, len(texts))
        return logits, _labels(logits)

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


class TorchRunner(_Tokenising):
    """A ``transformers`` sequence classifier loaded from safetensors, in inference mode."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        device: str = "cpu",
        max_length: int = 512,
        dtype: str = "float32",
        threads: int | None = None,
        inter_op_threads: int | None = None,
        tokenizer_dir: str | os.PathLike | None = None,
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
        super().__init__(_find_tokenizer_dir([Path(tokenizer_dir)] if tokenizer_dir else [model_dir]), max_length)
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
        self.model_dir, self.device, self.dtype = model_dir, device, dtype
        self._torch = torch

    def predict(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        parts = []
        with torch.inference_mode():
            for idx, feed in self.feeds(texts):
                out = self.model(
                    input_ids=torch.from_numpy(feed["input_ids"]).to(self.device),
                    attention_mask=torch.from_numpy(feed["attention_mask"]).to(self.device),
                )
                parts.append((idx, out.logits.float().cpu().numpy()))
        logits = _scatter(parts, len(texts))
        return logits, _labels(logits)

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

    ``engine``: ``"onnxruntime"`` (alias ``"onnx"``; ``path`` = ``artifacts/<v>/onnx[-int8]/``
    or a ``.onnx`` file) or ``"pytorch"`` (alias ``"torch"``; ``path`` = an HF directory such
    as ``artifacts/<v>/pytorch/`` or ``artifacts/<v>/model/``). Threads: intra-op / inter-op
    counts (None = library default). ``max_batch_tokens``: padded tokens per model call
    (None = the backend's default, :data:`DEFAULT_MAX_BATCH_TOKENS`).
    """
    if engine in ("onnxruntime", "onnx"):
        providers = [provider] if isinstance(provider, str) else list(provider)
        # CUDA/TensorRT sessions still need the CPU provider for unsupported nodes.
        if providers and providers[-1] != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        runner: Runner = OnnxRunner(
            path,
            tokenizer_dir=tokenizer_dir,
            providers=providers,
            intra_op_threads=threads,
            inter_op_threads=inter_op_threads,
            max_length=max_length,
        )
        runner.max_batch_tokens = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS["onnxruntime"]
        return runner
    if engine in ("pytorch", "torch"):
        runner = TorchRunner(
            path,
            device=device,
            max_length=max_length,
            dtype=dtype,
            threads=threads,
            inter_op_threads=inter_op_threads,
            tokenizer_dir=tokenizer_dir,
        )
        runner.max_batch_tokens = max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS["pytorch"]
        return runner
    raise ValueError(f"unknown runner engine {engine!r}; allowed: onnxruntime, pytorch")
