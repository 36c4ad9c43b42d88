"""Stage ``inference``: evaluate the reloaded artifact on the test split, with PyTorch (eager,
autocast, or dynamic int8) or, for v9, ONNX Runtime after an ONNX export in its own ``export``
window (``energy_kwh.export``, part of no stage)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from study.metrics import METRIC_NAMES, at_chance
from training.results import EXPORT

if TYPE_CHECKING:
    from training.repeat import Repeat


def _onnxruntime(rep: Repeat, model, tokenizer, texts: list[str], ev: dict[str, Any]):
    from training.evaluate import predict_onnxruntime
    from training.model import export_onnx

    cfg = rep.cfg
    with tempfile.TemporaryDirectory(prefix="gps-onnx-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        with rep.stage(EXPORT):  # its own window: energy_kwh.export, not part of a stage
            ev["onnx_export"] = export_onnx(model, onnx_path, opset=cfg.inference.onnx_opset)
        ev["export_s"] = rep.durations[EXPORT]
        ev["export_energy"] = rep.records[EXPORT].to_dict() if EXPORT in rep.records else None
        ev["onnx_bytes"] = onnx_path.stat().st_size
        with rep.stage("inference"):
            return predict_onnxruntime(onnx_path, tokenizer, texts, max_length=cfg.max_length,
                                       batch_size=cfg.inference.batch_size, threads=cfg.runtime.threads)


def _pytorch(rep: Repeat, model, tokenizer, texts: list[str], ev: dict[str, Any]):
    import torch

    from training.evaluate import predict_pytorch
    from training.model import model_size_mb

    cfg, pl = rep.cfg, rep.plan
    quantized = pl.eval_quantization != "none"
    if pl.eval_quantization == "dynamic_int8":
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model.cpu(), {torch.nn.Linear}, dtype=torch.qint8)
        ev["size_mb_quantized"] = model_size_mb(model)
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pl.precision)
    with rep.stage("inference"):
        out = predict_pytorch(model, tokenizer, texts, max_length=cfg.max_length, batch_size=cfg.inference.batch_size,
                              device="cpu" if quantized else pl.device,
                              autocast_dtype=None if quantized else autocast)
    ev["autocast"] = str(autocast).replace("torch.", "") if autocast is not None and not quantized else None
    return out


def run(rep: Repeat, model, tokenizer, test: pd.DataFrame) -> None:
    """Score the test split; records ``evaluation``, the headline metrics and ``at_chance``."""
    from training.evaluate import summarise

    cfg, result = rep.cfg, rep.result
    texts, labels = test["text"].tolist(), test["label"].tolist()
    pairs = [None if pd.isna(p) else str(p) for p in test["pair"]] if "pair" in test.columns else None
    ev: dict[str, Any] = {"engine": cfg.inference.engine, "quantization": rep.plan.eval_quantization,
                          "batch_size": cfg.inference.batch_size, "split": "test"}
    score = _onnxruntime if cfg.inference.engine == "onnxruntime" else _pytorch
    logits, wall_s = score(rep, model, tokenizer, texts, ev)
    metrics = summarise(labels, logits, wall_s, pairs=pairs)
    ev.update(metrics)
    result["evaluation"] = ev
    for k in (*METRIC_NAMES, "latency_ms"):
        result[k] = metrics[k]
    result["at_chance"] = at_chance(metrics["mcc"])
