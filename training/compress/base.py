"""What every compression method shares: method names, paths, the parent's data, fine-tuning,
the size/sparsity/FLOPs measurements, evaluation and the serving-side hooks.

A method module (``magnitude``, ``structured``, ``ptq_dynamic``, ``qat``, ``distill``) exposes
``compress(model, spec, ctx) -> Outcome``: it changes (or replaces) the parent's model inside
the ``compress`` energy window and says what it did. :mod:`training.compress.run` does the rest
(windows, evaluation, the atomic artifact and ``result.json``).

This module imports no torch at import time: the serving runner and the export read
``compression.json`` through it on a CPU box without paying for the training stack.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.paths import Paths
from training.workspace import VariantPaths

COMPRESSION_FILE = "compression.json"  # beside a compressed artifact's weights

# family → (module, what the number after "-" means); the registry is resolved on use.
METHODS: dict[str, tuple[str, str | None]] = {
    "magnitude": ("training.compress.magnitude", "pct"),
    "structured": ("training.compress.structured", "pct"),
    "ptq-dynamic": ("training.compress.ptq_dynamic", None),
    "qat": ("training.compress.qat", None),
    "distill": ("training.compress.distill", "layers"),
}
ALLOWED = ("magnitude-<pct>, structured-<pct> (0 < pct < 100), ptq-dynamic, qat, "
           "distill-<layers> (1 ≤ layers < the parent's encoder layers)")

# Default fine-tuning steps per family (FINETUNE_STEPS / --finetune-steps overrides): pruning
# is optional recovery (0 = prune only); QAT and distillation *are* training.
DEFAULT_FINETUNE_STEPS = {"magnitude": 0, "structured": 0, "ptq-dynamic": 0, "qat": 20, "distill": 40}

# What each method does to serving cost on these runtimes (dense CPU/GPU kernels). Written into
# result.json and shown in the report, so no saving is implied that was not measured.
SERVING_NOTES = {
    "magnitude": (
        "unstructured zeros: the weight matrices keep their shape and the dense kernels of "
        "PyTorch, ONNX Runtime and TensorRT multiply the zeros too, so FLOPs and serving cost do "
        "not fall; only a compressed copy of the file (weights_gzip_mb) shrinks"),
    "structured": (
        "physically smaller FFN matrices: fewer parameters and FLOPs per request on every "
        "engine (a real, dense saving)"),
    "ptq-dynamic": (
        "PyTorch dynamic int8 Linear layers, applied by the pytorch engine when it loads the "
        "artifact (CPU only); the file keeps float weights so it stays loadable with "
        "AutoModelForSequenceClassification; ONNX Runtime's int8 path is the onnx-int8 export"),
    "qat": (
        "float weights trained under int8 fake quantisation; the saving appears only when the "
        "onnx-int8 export (a static QDQ model) is served by ONNX Runtime; served as fp32 "
        "(onnx, pytorch) it costs the same as the parent"),
    "distill": (
        "a student with fewer encoder layers: fewer parameters and FLOPs per request on every "
        "engine (a real, dense saving)"),
}


class CompressError(ValueError):
    """Bad compression input: the message names the problem and the allowed values."""


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: ``magnitude-50`` → family ``magnitude``, value ``50``."""

    family: str
    value: float | int | None
    text: str  # canonical spelling, used in the variant name and paths

    @property
    def module(self) -> str:
        return METHODS[self.family][0]

    @property
    def fraction(self) -> float:
        """``value / 100`` for the percentage methods."""
        if METHODS[self.family][1] != "pct":
            raise AttributeError(f"{self.text} has no percentage")
        return float(self.value) / 100.0


_NUM = r"(\d+(?:\.\d+)?)"


def parse_method(text: str) -> MethodSpec:
    """``"magnitude-50"`` → :class:`MethodSpec`; anything else → :class:`CompressError`."""
    raw = str(text or "").strip()
    if raw in ("ptq-dynamic", "qat"):
        return MethodSpec(raw, None, raw)
    m = re.fullmatch(r"(magnitude|structured)-" + _NUM, raw)
    if m:
        pct = float(m.group(2))
        if not 0 < pct < 100:
            raise CompressError(f"method {raw!r}: the percentage must be in (0, 100), got {m.group(2)}; "
                                f"allowed: {ALLOWED}")
        value: float | int = int(pct) if pct.is_integer() else pct
        return MethodSpec(m.group(1), value, f"{m.group(1)}-{value:g}")
    m = re.fullmatch(r"distill-(\d+)", raw)
    if m:
        layers = int(m.group(1))
        if layers < 1:
            raise CompressError(f"method {raw!r}: the student needs at least 1 layer; allowed: {ALLOWED}")
        return MethodSpec("distill", layers, f"distill-{layers}")
    fam = raw.split("-")[0]
    if fam in ("magnitude", "structured", "distill"):
        what = "a percentage, e.g. magnitude-50" if fam != "distill" else "a layer count, e.g. distill-1"
        raise CompressError(f"method {raw!r}: {fam} needs {what}; allowed: {ALLOWED}")
    raise CompressError(f"unknown compression method {raw!r}; allowed: {ALLOWED}")


def compressed_name(parent: str, spec: MethodSpec) -> str:
    return f"{parent}@{spec.text}"


# -- paths ------------------------------------------------------------------------------------


class CompressPaths(VariantPaths):
    """Where one compression reads (the parent's model and training result) and writes
    (``<parent>@<method>``'s model and ``<results>/compress/<parent>@<method>/``)."""

    def __init__(self, parent: str, spec: MethodSpec, paths: Paths | None = None) -> None:
        paths = paths or Paths.from_env()
        variant = compressed_name(parent, spec)
        super().__init__(variant, paths.compress(variant), paths)
        self.parent = parent
        self.spec = spec
        self.parent_model_dir = paths.model_dir(parent)
        self.parent_result = paths.train_result(parent)


# -- what a method gets and returns -------------------------------------------------------------


@dataclass
class Context:
    """Everything a method may use. Texts are the parent's own splits (its ``split.json``)."""

    parent: str
    spec: MethodSpec
    tokenizer: Any
    cfg: Any  # the parent's resolved training.config.Config
    train_texts: list[str]
    train_labels: list[int]
    max_length: int  # the parent's training truncation (tokens)
    finetune_steps: int
    seed: int = 42
    device: str = "cpu"
    calibration_n: int = 32  # training texts used for importance / calibration statistics
    parent_model_dir: Path | None = None
    log: list[str] = field(default_factory=list)

    def calibration_texts(self) -> list[str]:
        return self.train_texts[: self.calibration_n]


@dataclass
class Outcome:
    """What a method returns: the model to save and evaluate, and what was done."""

    model: Any  # saved as the artifact (float, loadable with from_pretrained)
    details: dict[str, Any] = field(default_factory=dict)
    eval_model: Any = None  # evaluated instead of ``model`` (int8 / fake-quantised), if set
    compression_json: dict[str, Any] = field(default_factory=dict)  # extra keys for compression.json
    size_mb: float | None = None  # overrides the dense in-memory size (int8 models)


# -- fine-tuning (HF Trainer, as training does) -------------------------------------------------


def tokenized_train(ctx: Context):
    """The parent's training split tokenised as training did (cached by ``datasets``)."""
    from training.workspace import tokenize

    ds, _ = tokenize(ctx.tokenizer, ctx.train_texts, ctx.train_labels, ctx.max_length, ctx.cfg.data.padding)
    return ds


def finetune(model, ctx: Context, steps: int, loss_fn=None, lr: float | None = None) -> dict[str, Any]:
    """``steps`` optimizer steps of HF Trainer on the parent's training split.

    ``loss_fn(model, inputs) -> loss`` replaces the model's own cross-entropy (distillation).
    Batch size and accumulation are the parent's; the learning rate is the parent's unless
    given; no checkpoints (a killed compression is simply rerun). Returns losses and timing.
    """
    import tempfile

    from transformers import DataCollatorWithPadding, Trainer
    from transformers.utils import logging as hf_logging

    from training.stages.training import trainer_arguments

    if steps <= 0:
        return {"steps": 0}
    hf_logging.set_verbosity_warning()
    ds = tokenized_train(ctx)

    class _Trainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kw):
            if loss_fn is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, **kw)
            loss, outputs = loss_fn(model, inputs)
            return (loss, outputs) if return_outputs else loss

    with tempfile.TemporaryDirectory(prefix="gps-compress-") as tmp:
        args = trainer_arguments(ctx.cfg, tmp, ctx.seed, use_cpu=ctx.device == "cpu", max_steps=int(steps),
                                 learning_rate=lr if lr is not None else ctx.cfg.learning_rate,
                                 warmup_steps=0.1, logging_steps=max(1, min(10, steps)), save_strategy="no")
        trainer = _Trainer(model=model, args=args, train_dataset=ds,
                           data_collator=DataCollatorWithPadding(ctx.tokenizer), processing_class=ctx.tokenizer)
        trainer.model_accepts_loss_kwargs = False  # see training.stages.training: ModernBERT averages itself
        out = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "final_loss": losses[-1] if losses else None,
            "mean_loss": out.training_loss, "runtime_s": out.metrics.get("train_runtime"),
            "learning_rate": args.learning_rate}


# -- measurements -------------------------------------------------------------------------------


def encoder_linears(model) -> list[tuple[str, Any]]:
    """``(name, nn.Linear)`` of every Linear layer inside the encoder layers: the prunable
    weights (attention Wqkv/Wo, FFN Wi/Wo). Embeddings, norms and the head are not pruned."""
    import torch.nn as nn

    base = getattr(model, "model", model)
    return [(f"model.layers.{n}", m) for n, m in base.layers.named_modules() if isinstance(m, nn.Linear)]


def prunable_weight_names(model) -> list[str]:
    """State-dict keys of the prunable weights (as saved in ``model.safetensors``)."""
    return [f"{n}.weight" for n, _ in encoder_linears(model)]


def weight_stats(model) -> dict[str, Any]:
    """Parameters, non-zero parameters and the sparsity of the prunable weights."""
    import torch

    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())
    pw = [m.weight.detach() for _, m in encoder_linears(model)]
    n_prunable = sum(w.numel() for w in pw)
    nz_prunable = sum(int(torch.count_nonzero(w)) for w in pw)
    return {"params": int(params), "nonzero_params": int(nonzero), "prunable_params": int(n_prunable),
            "sparsity": (1.0 - nz_prunable / n_prunable) if n_prunable else 0.0}


def flops_per_request(model, seq_len: int) -> int:
    """Floating-point operations of one forward pass over one request of ``seq_len`` tokens
    (batch 1), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the dense model
    (matmuls + attention; a multiply-add is 2 FLOPs). Zeros are counted: dense kernels do."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from training.model import example_inputs

    ids, mask = example_inputs(model.config, seq=seq_len)
    ids, mask = ids[:1], torch.ones_like(ids[:1])
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device))
    model.train(was_training)
    return int(counter.get_total_flops())


def served_max_length(tokenizer, config, serving_default: int = 512) -> int:
    """The length a server truncates to: its ``max_length`` (512 by default, as
    ``serving.engines.config.EngineSettings``) capped by the tokenizer's and the model's limits."""
    n = int(serving_default)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        n = min(n, tok_max)
    pos = getattr(config, "max_position_embeddings", None)
    if pos:
        n = min(n, int(pos))
    return n


def quantized_size_mb(model) -> float:
    """Bytes of a dynamically quantised model's state (int8 packed weights + scales + the rest),
    in MB (10^6): ``parameters()`` does not see packed int8 weights, the state dict does."""
    import torch

    n = 0
    for v in model.state_dict().values():
        tensors = v if isinstance(v, tuple) else (v,)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                n += t.numel() * t.element_size()
    return n / 1e6


def file_sizes(model_dir: Path) -> dict[str, Any]:
    """Bytes on disk and the gzip-compressed size of the weights (what unstructured zeros save)."""
    import zlib

    weights = sorted(Path(model_dir).glob("*.safetensors"))
    gz = 0
    for w in weights:
        c = zlib.compressobj(6)
        with w.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                gz += len(c.compress(chunk))
        gz += len(c.flush())
    return {"artifact_bytes": sum(f.stat().st_size for f in Path(model_dir).iterdir() if f.is_file()),
            "weights_bytes": sum(w.stat().st_size for w in weights), "weights_gzip_mb": gz / 1e6}


# -- evaluation (the project's metrics) -------------------------------------------------------


def classification_with_mcc(labels, logits, wall_s: float) -> dict[str, Any]:
    """:func:`training.evaluate.summarise` (accuracy, F1, precision, recall, latency) plus the
    Matthews correlation from ``sklearn.metrics`` when the metrics module does not give it."""
    import numpy as np
    from sklearn.metrics import matthews_corrcoef

    from training.evaluate import summarise

    out = summarise(labels, logits, wall_s)
    if "mcc" not in out:
        preds = logits.argmax(-1) if len(logits) else np.zeros(0, int)
        out["mcc"] = float(matthews_corrcoef(labels, preds)) if len(labels) else None
    return out


# -- serving-side hooks (read compression.json) -------------------------------------------------


def read_compression(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``compression.json`` of an artifact or export directory, or ``None``."""
    p = Path(model_dir) / COMPRESSION_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: unreadable compression record ({e})") from None


def apply_serving_transform(model, model_dir: str | os.PathLike, device: str = "cpu", dtype: str = "float32"):
    """What the pytorch engine does after ``from_pretrained``: a ``ptq-dynamic`` artifact is
    quantised with the same ``torch.ao.quantization.quantize_dynamic`` call the compression
    measured (int8 Linear layers, CPU only); anything else is returned unchanged."""
    rec = read_compression(model_dir) or {}
    q = (rec.get("serving") or {}).get("pytorch")
    if not q:
        return model
    if q != "dynamic_int8":
        raise ValueError(f"{model_dir}/{COMPRESSION_FILE}: unknown pytorch serving transform {q!r}; "
                         f"allowed: dynamic_int8")
    if device != "cpu" or dtype != "float32":
        raise ValueError(f"{model_dir} is a ptq-dynamic artifact (int8 dynamic quantisation runs on CPU "
                         f"in float32); got device={device}, dtype={dtype}")
    import torch
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def export_refusal(model_dir: str | os.PathLike, fmt: str) -> str | None:
    """Why ``fmt`` must not be exported from this artifact (one line), or ``None``."""
    rec = read_compression(model_dir) or {}
    if (rec.get("serving") or {}).get("pytorch") == "dynamic_int8" and fmt != "pytorch":
        return (f"{rec.get('variant', model_dir)} is PyTorch dynamic int8 for the pytorch engine; "
                f"an {fmt} export of it would be the float parent. Serve it with ENGINE=pytorch, or "
                f"export the parent {rec.get('parent', '')} with FORMAT=onnx-int8 (ONNX Runtime's int8)")
    return None


def is_qat(model_dir: str | os.PathLike) -> bool:
    return (read_compression(model_dir) or {}).get("method_family") == "qat"
