"""onnx-int8 export: ONNX Runtime dynamic quantisation of ``<variant>/onnx/model.onnx``.

Weights of MatMul/Gemm become int8 (per-tensor by default); activations are quantised on the
fly per batch, so no calibration data is needed. The fp32 ONNX export is built first when it
is missing. ``quant_pre_process`` (symbolic shape inference + ORT optimisation) runs first as
ONNX Runtime recommends; if it fails on a graph, quantisation proceeds on the plain file and the
reason is recorded.

A quantisation-aware-trained artifact (``<variant>@qat``, ``compression.json`` method ``qat``)
is quantised statically instead: ``quantize_static`` in QDQ format with the scheme it was
fine-tuned under (uint8 per-tensor activations, int8 per-channel weights), activation ranges
calibrated (MinMax) on texts of its own training split, so ONNX Runtime runs it in int8.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from serving.export.base import ExportContext, check_options, copy_tokenizer, fresh_dir

WEIGHT_TYPES = ("qint8", "quint8")
OPTIONS: dict[str, Any] = {"weight_type": "qint8", "per_channel": False,
                           "op_types": ("MatMul", "Gemm")}


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    return check_options("onnx-int8", options, OPTIONS, {"weight_type": WEIGHT_TYPES})


def build(ctx: ExportContext) -> dict[str, Any]:
    """Write ``<variant>/onnx-int8/``: quantised ``model.onnx`` + tokenizer. Returns details."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    opts = validate_options(ctx.options)
    src = ctx.format_dir("onnx") / "model.onnx"
    built_onnx = False
    if not src.exists():
        from serving.export import run_export

        run_export(ctx.variant, "onnx", artifacts_dir=ctx.artifacts_dir, max_length=ctx.max_length)
        built_onnx = True
    out = fresh_dir(ctx.out_dir)
    info: dict[str, Any] = {"source": str(src), "built_onnx_first": built_onnx,
                            "method": "onnxruntime.quantization.quantize_dynamic",
                            "weight_type": opts["weight_type"], "per_channel": bool(opts["per_channel"]),
                            "op_types": list(opts["op_types"]), "onnxruntime_version": ort.__version__,
                            "pre_process": None}
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre))
            qsrc = pre
            info["pre_process"] = "quant_pre_process (symbolic shape inference + optimisation)"
        except Exception as e:  # a graph the pre-processor cannot handle still quantises
            qsrc = src
            info["pre_process"] = f"skipped: {type(e).__name__}: {str(e)[:200]}"
        from training.compress.base import is_qat

        if is_qat(ctx.model_dir):
            info.update(quantize_qdq(ctx, qsrc, out / "model.onnx", opts))
        else:
            quantize_dynamic(
                str(qsrc), str(out / "model.onnx"),
                weight_type=QuantType.QInt8 if opts["weight_type"] == "qint8" else QuantType.QUInt8,
                per_channel=bool(opts["per_channel"]),
                op_types_to_quantize=list(opts["op_types"]),
            )
    onnx.checker.check_model(str(out / "model.onnx"))
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    info["quantized_nodes"] = sum(1 for n in m.graph.node if n.op_type in
                                  ("MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
                                   "QuantizeLinear"))
    info["fp32_size_bytes"] = src.stat().st_size
    info["tokenizer_files"] = copy_tokenizer(ctx.model_dir, out)
    info["model_file"] = "model.onnx"
    return info


CALIBRATION_N = 32  # training texts whose activations set the QDQ ranges


def quantize_qdq(ctx: ExportContext, src: Path, dst: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Static QDQ quantisation of a QAT model (see the module docstring); returns details."""
    import numpy as np
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from transformers import AutoTokenizer

    from training.data import load_split_for_artifact

    texts = [str(t) for t in load_split_for_artifact("train", ctx.model_dir)["text"].iloc[:CALIBRATION_N]]
    tok = AutoTokenizer.from_pretrained(str(ctx.model_dir))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(texts)

        def get_next(self):
            t = next(self.rows, None)
            if t is None:
                return None
            enc = tok([t], truncation=True, max_length=ctx.max_length, return_tensors="np")
            return {"input_ids": enc["input_ids"].astype(np.int64),
                    "attention_mask": enc["attention_mask"].astype(np.int64)}

    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=list(opts["op_types"]), calibrate_method=CalibrationMethod.MinMax,
    )
    return {"method": "onnxruntime.quantization.quantize_static (QDQ) of a quantisation-aware-trained model",
            "activation_type": "quint8 per-tensor", "weight_type": "qint8", "per_channel": True,
            "calibration": f"MinMax over {len(texts)} texts of the artifact's training split"}


def predictor(ctx: ExportContext):
    from serving.runners import OnnxRunner

    return OnnxRunner(ctx.out_dir / "model.onnx", tokenizer_dir=ctx.out_dir,
                      max_length=ctx.max_length).predict
