"""Stage ``architecture``: build (tiny) or load (real) the classifier, prune layers, wrap with
LoRA (and prepare a bitsandbytes-quantised model for training)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from training.config import Config
from training.runtime import Plan

if TYPE_CHECKING:
    from training.repeat import Repeat


def _quantization_config(pl: Plan) -> dict[str, Any]:
    if pl.bnb_quantization == "none":
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    return {"quantization_config": (
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        if pl.bnb_quantization == "bnb_4bit" else BitsAndBytesConfig(load_in_8bit=True)
    )}


def architecture_stage(cfg: Config, pl: Plan, tokenizer, seed: int) -> tuple[Any, dict[str, Any]]:
    """Build (tiny) or load (real) the classifier, prune layers, wrap with LoRA."""
    from training.model import (
        apply_lora,
        build_tiny_model,
        count_params,
        load_model,
        model_size_mb,
        prune_layers,
        pruned_layer_count,
    )

    info: dict[str, Any] = {"name": cfg.model.name, "attn_implementation": cfg.model.attn_implementation}
    if cfg.is_tiny:
        model = build_tiny_model(tokenizer, seed=seed, attn_implementation=cfg.model.attn_implementation,
                                 **asdict(cfg.model.tiny))
    else:
        model, _ = load_model(cfg.model.name, attn_implementation=cfg.model.attn_implementation,
                              **_quantization_config(pl))
    layers_before = int(model.config.num_hidden_layers)
    n_drop, note = pruned_layer_count(cfg.pruning.layers, layers_before, cfg.pruning.reference_layers)
    if n_drop:
        prune_layers(model, n_drop, cfg.pruning.side)
    info["pruning"] = {"requested": cfg.pruning.layers, "side": cfg.pruning.side, "dropped": n_drop,
                       "layers_before": layers_before, "layers_after": int(model.config.num_hidden_layers),
                       "note": note}
    if pl.bnb_quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    if cfg.peft.enabled:
        p = cfg.peft
        model = apply_lora(model, r=p.r, alpha=p.alpha, dropout=p.dropout,
                           target_modules=p.target_modules, modules_to_save=p.modules_to_save)
        if cfg.training.gradient_checkpointing:
            model.enable_input_require_grads()
    info.update(count_params(model))
    info["size_mb_training"] = model_size_mb(model)
    info["layers"] = int(model.config.num_hidden_layers) if hasattr(model, "config") else None
    return model, info


def run(rep: Repeat, tokenizer) -> Any:
    """The stage in its window; records ``model`` (and the pruning note). Returns the model."""
    with rep.stage("architecture"):
        model, minfo = architecture_stage(rep.cfg, rep.plan, tokenizer, rep.seed)
    rep.result["model"] = minfo
    if minfo["pruning"]["note"]:
        rep.result["notes"].append(minfo["pruning"]["note"])
    return model
