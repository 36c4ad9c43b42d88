"""Evaluation of a trained classifier on held-out examples (the training run's inference stage).

Two engines: ``pytorch`` (the reloaded artifact) and ``onnxruntime`` (the same model exported
with ``torch.onnx.export`` and run by ONNX Runtime, variant v9), both through the study's one
inference layer (:mod:`training.inference`: the servers' tokenisation, length-grouped batching
and padding). Both tokenise inside the timed loop, as a server would, so ``latency_ms``
includes tokenisation. The metrics are
:func:`study.metrics.classification_metrics`, the study's one scoring function.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from study.metrics import classification_metrics, logit_score
from training.inference import TextEncoder, infer, onnx_forward, onnx_session, torch_forward


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False, disable=os.environ.get("GPS_NO_PROGRESS") == "1")


def _timed(encoder: TextEncoder, forward, texts: Sequence[str], desc: str) -> tuple[np.ndarray, float]:
    """:func:`training.inference.infer` over ``texts`` with a progress bar: (logits, wall s)."""
    if not texts:
        return np.zeros((0, 2), np.float32), 0.0
    bar = _progress(len(texts), desc)
    t0 = time.perf_counter()
    logits = infer(encoder, forward, list(texts), on_rows=bar.update)
    wall_s = time.perf_counter() - t0
    bar.close()
    return logits, wall_s


def predict_pytorch(
    model, tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int = 8,
    device: str = "cpu", autocast_dtype=None,
) -> tuple[np.ndarray, float]:
    """Logits ``[n, 2]`` (float32) and the wall time in seconds of the whole loop (tokenisation
    included): the study's one inference layer, at most ``batch_size`` rows per model call."""
    encoder = TextEncoder.from_tokenizer(tokenizer, max_length, max_batch_rows=batch_size)
    return _timed(encoder, torch_forward(model, device, autocast_dtype), texts, "evaluate (pytorch)")


def predict_onnxruntime(
    onnx_path: str | os.PathLike, tokenizer, texts: Sequence[str], *, max_length: int,
    batch_size: int = 8, threads: int = 0,
) -> tuple[np.ndarray, float]:
    """Logits ``[n, 2]`` from ONNX Runtime (CPU provider) and the loop's wall time in seconds."""
    session = onnx_session(onnx_path, intra_op_threads=threads or None)
    encoder = TextEncoder.from_tokenizer(tokenizer, max_length, max_batch_rows=batch_size)
    return _timed(encoder, onnx_forward(session), texts, "evaluate (onnxruntime)")


def summarise(labels: Sequence[int], logits: np.ndarray, wall_s: float,
              pairs: Sequence[Any] | None = None) -> dict[str, Any]:
    """:func:`study.metrics.classification_metrics` of ``logits`` against ``labels`` (argmax
    predictions; the logit difference as the score for ROC-AUC and pair accuracy; ``pairs`` the
    examples' pair ids, see :func:`training.data.make_examples`) + ``latency_ms`` (mean wall
    time per example, tokenisation included)."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1, 2)
    preds = logits.argmax(-1)
    n = len(labels)
    if len(logits) != n:
        raise ValueError(f"labels and logits differ in length: {n} vs {len(logits)}")
    out: dict[str, Any] = classification_metrics(labels, preds, scores=logit_score(logits),
                                                 pairs=None if pairs is None else list(pairs))
    out["latency_ms"] = wall_s * 1000.0 / n if n else None
    out["n_evaluated"] = n
    out["predicted_positive"] = int((preds == 1).sum())
    return out
