"""pytorch export: the HF directory the pytorch engine (and vLLM) serve — safetensors, LoRA merged.

Training already merges LoRA (``merge_and_unload``) before ``save_pretrained``. This step
re-loads ``model/`` as a plain ``transformers`` model, proves no PEFT wrapper, ``lora_`` weight
or adapter file is left (an un-merged artifact is refused with the fix), and re-saves it as
safetensors with the tokenizer beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from serving.export.base import ExportContext, copy_tokenizer, fresh_dir

OPTIONS: dict[str, Any] = {}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def peft_leftovers(model) -> list[str]:
    """Names that betray an unmerged PEFT model: wrapper classes, ``lora_`` parameters."""
    found = []
    for name, module in model.named_modules():
        cls = type(module)
        if cls.__module__.startswith("peft"):
            found.append(f"{name or '<root>'}: {cls.__module__}.{cls.__name__}")
    found += [n for n, _ in model.named_parameters() if "lora_" in n]
    if getattr(model, "peft_config", None):
        found.append("peft_config attribute")
    return found


def load_merged(model_dir: Path):
    """Load ``model_dir`` as a plain classifier and prove it holds no PEFT adapter.

    Training merges LoRA before ``save_pretrained`` (``training.model``); an adapter file here
    means an un-merged artifact, which is refused with the fix rather than served half-applied.
    Returns ``(model, how)``.
    """
    from transformers import AutoModelForSequenceClassification

    adapters = [f for f in ADAPTER_FILES if (model_dir / f).exists()]
    if adapters:
        raise RuntimeError(
            f"{model_dir} holds an un-merged PEFT adapter ({', '.join(adapters)}); re-run training, "
            f"which merges LoRA (merge_and_unload) before save_pretrained"
        )
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), use_safetensors=True)
    return model, "merged by training (no adapter files, no PEFT modules or lora_ weights)"


def build(ctx: ExportContext) -> dict[str, Any]:
    """Write ``<variant>/pytorch/``: config, ``model.safetensors``, tokenizer. Returns details."""
    import torch

    out = fresh_dir(ctx.out_dir)
    model, how = load_merged(ctx.model_dir)
    model.eval()
    left = peft_leftovers(model)
    if left:
        raise RuntimeError(f"{ctx.model_dir}: PEFT wrapper/weights left after merging: {left[:5]}")
    model.save_pretrained(out, safe_serialization=True)
    # config.json was just written by save_pretrained; the tokenizer files are copied verbatim.
    copy_tokenizer(ctx.model_dir, out)
    weights = sorted(p.name for p in out.glob("*.safetensors"))
    if not weights or any(out.glob("*.bin")):
        raise RuntimeError(f"{out}: expected safetensors weights only, found {sorted(os.listdir(out))}")
    config = json.loads((out / "config.json").read_text())
    return {
        "lora": how,
        "peft_leftovers": left,
        "weights": weights,
        "params": int(sum(p.numel() for p in model.parameters())),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "architectures": config.get("architectures"),
        "torch_version": torch.__version__,
        "model_file": weights[0],
    }


def predictor(ctx: ExportContext):
    """The serving runner on the export (what the pytorch engine loads)."""
    from serving.runners import TorchRunner

    return TorchRunner(ctx.out_dir, device="cpu", max_length=ctx.max_length).predict

