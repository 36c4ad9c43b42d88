"""Evaluation of a trained classifier on held-out examples (the training run's inference stage).

Two engines: ``pytorch`` (the reloaded artifact) and ``onnxruntime`` (the same model exported
with ``torch.onnx.export`` and run by ONNX Runtime, variant v9). Both tokenise inside the timed
loop, as a server would, so ``latency_ms`` includes tokenisation. The metrics are
:func:`study.metrics.classification_metrics`, the study's one scoring function.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from study.metrics import classification_metrics, logit_score


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
