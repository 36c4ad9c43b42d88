"""Evaluation of a trained classifier on held-out examples (the training run's inference stage).

Two engines: ``pytorch`` (the reloaded artifact) and ``onnxruntime`` (the same model exported
with ``torch.onnx.export`` and run by ONNX Runtime, variant v9). Both tokenise inside the timed
loop, as a server would, so ``latency_ms`` includes tokenisation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np


def classification_metrics(labels: Sequence[int], preds: Sequence[int]) -> dict[str, float]:
    """Accuracy and the positive class's (label 1, vulnerable) F1, precision and recall.

    Precision/recall/F1 are 0.0 when undefined (no predicted or no true positives), as
    scikit-learn's ``zero_division=0``.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(preds, dtype=int)
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape} vs {p.shape}")
    n = len(y)
    tp = int(((p == 1) & (y == 1)).sum())
    fp = int(((p == 1) & (y == 0)).sum())
    fn = int(((p == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float((p == y).sum() / n) if n else 0.0
    return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def _batches(texts: Sequence[str], batch_size: int):
    for i in range(0, len(texts), batch_size):
        yield list(texts[i : i + batch_size])


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex", leave=False, disable=os.environ.get("GPS_NO_PROGRESS") == "1")


def predict_pytorch(
    model, tokenizer, texts: Sequence[str], *, max_length: int, batch_size: int = 8,
    device: str = "cpu", autocast_dtype=None,
) -> tuple[np.ndarray, float]:
    """Logits ``[n, 2]`` (float32) and the wall time in seconds of the whole loop."""
    import torch

    model.eval()
    out = []
    ctx = torch.autocast(device_type=device, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    bar = _progress(len(texts), "evaluate (pytorch)")
    t0 = time.perf_counter()
    with torch.inference_mode(), ctx:
        for batch in _batches(texts, batch_size):
            enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out.append(model(**enc).logits.float().cpu().numpy())
            bar.update(len(batch))
    wall_s = time.perf_counter() - t0
    bar.close()
    return (np.concatenate(out) if out else np.zeros((0, 2), np.float32)), wall_s


def predict_onnxruntime(
    onnx_path: str | os.PathLike, tokenizer, texts: Sequence[str], *, max_length: int,
    batch_size: int = 8, threads: int = 0,
) -> tuple[np.ndarray, float]:
    """Logits ``[n, 2]`` from ONNX Runtime (CPU provider) and the loop's wall time in seconds."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    out = []
    bar = _progress(len(texts), "evaluate (onnxruntime)")
    t0 = time.perf_counter()
    for batch in _batches(texts, batch_size):
        enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
        out.append(sess.run(["logits"], feeds)[0].astype(np.float32))
        bar.update(len(batch))
    wall_s = time.perf_counter() - t0
    bar.close()
    return (np.concatenate(out) if out else np.zeros((0, 2), np.float32)), wall_s


def summarise(labels: Sequence[int], logits: np.ndarray, wall_s: float) -> dict[str, Any]:
    """Metrics + ``latency_ms`` (mean wall time per example, tokenisation included)."""
    preds = logits.argmax(-1) if len(logits) else np.zeros(0, int)
    n = len(labels)
    out: dict[str, Any] = classification_metrics(labels, preds)
    out["latency_ms"] = wall_s * 1000.0 / n if n else None
    out["n_evaluated"] = n
    out["predicted_positive"] = int((preds == 1).sum())
    return out
