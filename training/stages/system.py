"""Stage ``system``: save the artifact (LoRA merged) atomically and reload it the way a server
would. :func:`save_artifact_atomically` is also compression's writer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.io import write_json_atomic
from training.data import SPLIT_FILE

if TYPE_CHECKING:
    from training.repeat import Repeat


def save_artifact_atomically(model, tokenizer, out_dir: Path, split: dict[str, Any] | None = None,
                             extra_json: dict[str, Any] | None = None) -> Path:
    """Write the artifact to a sibling temp dir, then swap it in: a reader never sees half a model.

    ``split`` (data path, split seed, fractions, paired) is saved as ``split.json`` beside the
    weights, so later stages evaluate and load-test on exactly this model's held-out split.
    ``extra_json`` (``{file name: object}``) adds more JSON files to the same atomic swap (a
    compressed artifact's ``compression.json``).
    """
    from training.model import save_artifact

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_artifact(model, tokenizer, tmp)
    if split is not None:
        write_json_atomic(tmp / SPLIT_FILE, split)
    for name, obj in (extra_json or {}).items():
        write_json_atomic(tmp / name, obj)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def unwrap(trainer):
    """The trained model without accelerate's or torch.compile's wrapper."""
    model = trainer.model
    try:
        model = trainer.accelerator.unwrap_model(model)
    except Exception:
        pass
    return getattr(model, "_orig_mod", model)  # torch.compile wrapper


def run(rep: Repeat, trainer, tokenizer, data_path: Path):
    """Merge, save and reload in the stage's window; records ``artifact`` and the saved model's
    size. Returns the reloaded ``(model, tokenizer)`` on the plan's device."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.model import merge_lora, model_size_mb

    cfg, pl, out_dir = rep.cfg, rep.plan, rep.paths.artifact_dir
    with rep.stage("system"):
        final = merge_lora(unwrap(trainer))
        final = final.float() if pl.bnb_quantization == "none" else final
        split = {"data_path": str(data_path), "split_seed": cfg.data.split_seed,
                 "fractions": list(cfg.data.fractions), "paired": cfg.data.paired}
        save_artifact_atomically(final, tokenizer, out_dir, split=split)
        reloaded = AutoModelForSequenceClassification.from_pretrained(out_dir, use_safetensors=True)
        reloaded_tok = AutoTokenizer.from_pretrained(out_dir)
        reloaded.to(pl.device).eval()
    rep.result["artifact"] = str(out_dir)
    rep.result["model"]["params_artifact"] = sum(p.numel() for p in reloaded.parameters())
    rep.result["model"]["size_mb"] = model_size_mb(reloaded)
    rep.result["model"]["artifact_bytes"] = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    return reloaded, reloaded_tok
