"""onnx export: ``<variant>/onnx/model.onnx`` (+ tokenizer) with dynamic batch and sequence axes.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch's maintained exporter, the default
since torch 2.9) with the TorchScript exporter (``dynamo=False``) as a recorded fallback. On
ModernBERT both give parity ≤ 1e-6 on the tiny model; the dynamo graph is smaller (≈180 vs ≈480
nodes, its onnxscript pass already folds constants) but slower to export (seconds vs < 1 s).

Graph optimisation offline: ONNX Runtime's *basic* level (constant folding, redundant-node
elimination) saved with ``SessionOptions.optimized_model_filepath``. Basic rewrites keep to
standard ONNX ops, so the file stays portable to every execution provider, to Triton's
onnxruntime backend and to the TensorRT parser. The *extended* level (``--onnx-optimize
extended``) fuses into ``com.microsoft`` contrib ops that only ORT's CPU/CUDA providers run;
the servers apply ``ORT_ENABLE_ALL`` online anyway, so the offline step mainly saves start-up
work. Node counts before/after are recorded in ``export.json``.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
from pathlib import Path
from typing import Any

from serving.export.base import ExportContext, check_options, copy_tokenizer, fresh_dir
from training.model import ONNX_INPUTS as INPUT_NAMES

EXPORTERS = ("dynamo", "torchscript")
OPTIMIZE_LEVELS = ("none", "basic", "extended")
OPTIONS: dict[str, Any] = {"exporter": "dynamo", "opset": 18, "optimize": "basic"}
MIN_OPSET = 17  # LayerNormalization is a standard op from opset 17


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults; reject unknown keys and bad values naming the allowed ones."""
    opts = check_options("onnx", options, OPTIONS, {"exporter": EXPORTERS, "optimize": OPTIMIZE_LEVELS})
    if int(opts["opset"]) < MIN_OPSET:
        raise ValueError(f"onnx opset={opts['opset']}; allowed: >= {MIN_OPSET}")
    opts["opset"] = int(opts["opset"])
    return opts


def export_raw(model_dir: Path, path: Path, *, exporter: str, opset: int) -> dict[str, Any]:
    """``torch.onnx.export`` the classifier in ``model_dir`` to ``path``
    (:func:`training.model.export_onnx`: dynamo, TorchScript as a recorded fallback)."""
    from transformers import AutoModelForSequenceClassification

    from training.model import export_onnx

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), use_safetensors=True)
    return export_onnx(model, path, exporter=exporter, opset=opset)


def graph_stats(path: Path) -> dict[str, Any]:
    """Node count and op domains of an ONNX file (without loading external weights)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    domains = collections.Counter(n.domain or "ai.onnx" for n in m.graph.node)
    return {"nodes": len(m.graph.node), "domains": dict(domains),
            "opset": {o.domain or "ai.onnx": o.version for o in m.opset_import}}


def prune_opset_imports(path: Path) -> None:
    """Drop opset imports no node uses (ORT's saver lists all its own domains; TensorRT's
    parser and Triton need only the used ones)."""
    import onnx

    m = onnx.load(str(path))
    used = {n.domain for n in m.graph.node} | {""}
    keep = [o for o in m.opset_import if o.domain in used]
    if len(keep) != len(m.opset_import):
        del m.opset_import[:]
        m.opset_import.extend(keep)
        onnx.save(m, str(path))


def optimize(src: Path, dst: Path, level: str) -> dict[str, Any]:
    """Apply ORT's offline graph optimisation ``level`` (none/basic/extended) src → dst."""
    import onnx
    import onnxruntime as ort

    before = graph_stats(src)
    has_external = any(p != src for p in src.parent.glob(src.name + "*"))
    if level == "none" or has_external:
        # >2 GB models keep their weights outside the proto; re-save them beside dst under its
        # own name (the proto records the data file's name). ORT cannot optimise those offline.
        if has_external:
            onnx.save(onnx.load(str(src)), str(dst), save_as_external_data=True,
                      all_tensors_to_one_file=True, location=dst.name + ".data")
        else:
            shutil.copy2(src, dst)
        return {"level": "none" if level == "none" else f"skipped ({level}): external data",
                "nodes_before": before["nodes"], "nodes_after": before["nodes"],
                "onnxruntime_version": ort.__version__}
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    prune_opset_imports(dst)
    after = graph_stats(dst)
    return {"level": level, "nodes_before": before["nodes"], "nodes_after": after["nodes"],
            "domains_after": after["domains"], "onnxruntime_version": ort.__version__,
            "applied_by": "onnxruntime.SessionOptions.optimized_model_filepath"}


def build(ctx: ExportContext) -> dict[str, Any]:
    """Write ``<variant>/onnx/``: ``model.onnx`` + tokenizer + config. Returns details."""
    import onnx

    opts = validate_options(ctx.options)
    out = fresh_dir(ctx.out_dir)
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        info = export_raw(ctx.model_dir, raw, exporter=opts["exporter"], opset=opts["opset"])
        info["graph_optimization"] = optimize(raw, out / "model.onnx", opts["optimize"])
    onnx.checker.check_model(str(out / "model.onnx"))
    info["tokenizer_files"] = copy_tokenizer(ctx.model_dir, out)
    info["inputs"] = {n: "int64 [batch, sequence]" for n in INPUT_NAMES}
    info["outputs"] = {"logits": "float32 [batch, 2]"}
    info["model_file"] = "model.onnx"
    return info


def predictor(ctx: ExportContext):
    """The serving runner on the export (ORT CPU, what the onnxruntime engine loads)."""
    from serving.runners import OnnxRunner

    return OnnxRunner(ctx.out_dir / "model.onnx", tokenizer_dir=ctx.out_dir,
                      max_length=ctx.max_length).predict
