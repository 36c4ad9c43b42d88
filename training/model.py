"""Architecture stage: build (tiny, embedded default) or load (real checkpoint) a ModernBERT
sequence classifier and its tokenizer.

``MODEL=tiny`` is a ModernBERT with a shrunken ``ModernBertConfig`` and random weights, plus a
byte-level BPE tokenizer trained here on the *training split only* (training it on all data
would leak test vocabulary). Everything else is loaded with ``from_pretrained`` from a local
directory or a hub id, which works offline only when the files are already on disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.config import TinyModelConfig

log = logging.getLogger(__name__)

LABELS = {0: "safe", 1: "vulnerable"}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Small enough to train in minutes on 2 CPU cores, large enough to learn something.
# build_tiny_model()'s default: the config's tiny model (training.config.TinyModelConfig, the
# one list of its keys), a little larger
TINY_DEFAULTS: dict[str, Any] = asdict(TinyModelConfig(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                                       intermediate_size=256, max_position_embeddings=512))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, max_length: int = 512):
    """Train a byte-level BPE tokenizer (any byte sequence, so non-ASCII never fails).

    Returns a ``transformers.PreTrainedTokenizerFast`` that adds ``[CLS] … [SEP]``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def build_tiny_model(tokenizer, seed: int = 42, attn_implementation: str = "sdpa", **overrides):
    """A randomly initialised ModernBERT classifier sized by ``TINY_DEFAULTS`` (+ ``overrides``)."""
    import torch
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    unknown = set(overrides) - set(TINY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tiny-model keys {sorted(unknown)}; valid: {sorted(TINY_DEFAULTS)}")
    params = {**TINY_DEFAULTS, **overrides, "vocab_size": len(tokenizer)}
    config = ModernBertConfig(
        **params,
        num_labels=2,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        classifier_pooling="mean",
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return ModernBertForSequenceClassification(config)


def load_model(name_or_dir: str | os.PathLike, attn_implementation: str | None = "sdpa", **kwargs):
    """Load a real checkpoint (a local directory or a hub id) as a 2-label classifier.

    Offline (``HF_HUB_OFFLINE=1``, the default here) a hub id works only when it is already in
    the local cache; otherwise this raises one clear error saying what to do.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = str(name_or_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
        model = AutoModelForSequenceClassification.from_pretrained(
            src,
            num_labels=2,
            id2label=dict(LABELS),
            label2id={v: k for k, v in LABELS.items()},
            attn_implementation=attn_implementation,
            use_safetensors=True,
            **kwargs,
        )
    except OSError as e:
        raise RuntimeError(
            f"model {src!r} is not available: give a local directory with config.json, "
            f"safetensors weights and tokenizer files, or a hub id already in the HF cache "
            f"(no hub downloads here; HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r}). "
            f"MODEL=tiny builds the embedded default. ({e.__class__.__name__}: {e})"
        ) from None
    return model, tokenizer


def save_artifact(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """``save_pretrained`` as safetensors + tokenizer: loadable with
    ``AutoModelForSequenceClassification.from_pretrained(out_dir)``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def count_params(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}


def model_size_mb(model) -> float:
    """Parameters + buffers in MB (10^6 bytes), at their current dtypes."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    n += sum(b.numel() * b.element_size() for b in model.buffers())
    return n / 1e6


def pruned_layer_count(requested: int, model_layers: int, reference_layers: int = 22) -> tuple[int, str]:
    """How many encoder layers to drop, and a note saying how that number was reached.

    ``requested`` counts against ``reference_layers`` (ModernBERT-base's 22, the seed's sweep).
    A model of that depth drops exactly ``requested``; another depth drops the same *share*,
    ``round(requested × model_layers / reference_layers)``, clamped to ``[1, model_layers − 1]``
    (a pruned model keeps at least one layer). ``reference_layers=0`` means ``requested`` is an
    absolute count, and asking for ``model_layers`` or more is an error.
    """
    if requested <= 0:
        return 0, ""
    if model_layers < 2:
        raise ValueError(f"cannot prune a model with {model_layers} encoder layer(s): at least one must remain")
    if reference_layers <= 0 or reference_layers == model_layers:
        if requested >= model_layers:
            raise ValueError(
                f"pruning.layers={requested} would drop all {model_layers} encoder layers; "
                f"the most that can be dropped is {model_layers - 1}"
            )
        return requested, f"dropped {requested} of {model_layers} layers"
    n = min(max(1, round(requested * model_layers / reference_layers)), model_layers - 1)
    return n, (
        f"{requested} of {reference_layers} reference layers scaled to this model's depth: "
        f"dropped {n} of {model_layers} layers"
    )


def prune_layers(model, n: int, side: str = "top"):
    """Drop ``n`` encoder layers of a ModernBERT model in place, from the ``top`` (output end)
    or the ``bottom`` (input end), and keep its config consistent so that the saved artifact
    reloads with ``from_pretrained`` into exactly the same network.

    ModernBERT's first layer has no attention pre-norm (``nn.Identity``) and every layer's
    local/global attention comes from ``config.layer_types``; after dropping bottom layers the
    new first layer's pre-norm is replaced by the identity, as ``from_pretrained`` would build it.
    """

    if side not in ("top", "bottom"):
        raise ValueError(f"pruning side {side!r}; valid: top, bottom")
    base = getattr(model, "model", model)
    total = len(base.layers)
    if n <= 0:
        return model
    if n >= total:
        raise ValueError(f"cannot drop {n} of {total} encoder layers; at most {total - 1}")
    keep = list(range(total - n)) if side == "top" else list(range(n, total))
    return select_layers(model, keep)


def select_layers(model, keep: list[int]):
    """Keep only the encoder layers at indices ``keep`` (ascending) of a ModernBERT model, in
    place, with the config kept consistent (see :func:`prune_layers`; also used to initialise a
    distillation student from its teacher's layers)."""
    import torch.nn as nn

    base = getattr(model, "model", model)
    layers = base.layers
    total = len(layers)
    if not keep or sorted(set(keep)) != list(keep) or keep[0] < 0 or keep[-1] >= total:
        raise ValueError(f"layers to keep must be ascending indices in 0..{total - 1}, got {keep}")
    base.layers = nn.ModuleList([layers[i] for i in keep])
    cfg = model.config
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    cfg.num_hidden_layers = len(keep)
    for new_idx, layer in enumerate(base.layers):
        layer.layer_idx = new_idx
        if hasattr(layer, "attn"):
            layer.attn.layer_idx = new_idx
    if keep[0] != 0 and hasattr(base.layers[0], "attn_norm"):
        base.layers[0].attn_norm = nn.Identity()
    return model


def apply_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.1,
               target_modules=("Wqkv", "Wo", "Wi"), modules_to_save=("head", "classifier")):
    """Wrap ``model`` with LoRA adapters (peft). The classification head (``modules_to_save``)
    stays fully trainable: it is randomly initialised, so frozen it could never learn."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        modules_to_save=list(modules_to_save),
    )
    return get_peft_model(model, config)


def merge_lora(model):
    """A plain ``transformers`` model with the adapters merged into the base weights (and the
    trained copies of ``modules_to_save`` in place); a model without adapters is returned as is."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


# -- ONNX ----------------------------------------------------------------------------------------

ONNX_INPUTS = ["input_ids", "attention_mask"]
ONNX_OUTPUTS = ["logits"]


def logits_only(model):
    """Wrap the HF classifier so the ONNX graph has exactly one output, ``logits``."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly(model).eval()


def example_inputs(config, seq: int = 16):
    """Two rows of token ids (the second one padded), so no axis is traced as a constant 1."""
    import torch

    g = torch.Generator().manual_seed(0)
    lo = 5 if config.vocab_size > 10 else 0
    ids = torch.randint(lo, config.vocab_size, (2, seq), generator=g, dtype=torch.long)
    cls_id = getattr(config, "cls_token_id", None)
    sep_id = getattr(config, "sep_token_id", None)
    pad_id = getattr(config, "pad_token_id", 0) or 0
    if cls_id is not None:
        ids[:, 0] = cls_id
    mask = torch.ones_like(ids)
    if sep_id is not None:
        ids[0, -1] = sep_id
        ids[1, seq // 2] = sep_id
    ids[1, seq // 2 + 1 :] = pad_id
    mask[1, seq // 2 + 1 :] = 0
    return ids, mask


def export_onnx(model, path: str | os.PathLike, *, exporter: str = "dynamo", opset: int = 18) -> dict[str, Any]:
    """Export a sequence classifier to ONNX: ``input_ids``/``attention_mask`` (int64, dynamic
    batch and sequence axes) → ``logits`` (float32). ``exporter`` "dynamo" (torch's maintained
    exporter) falls back to "torchscript" when it fails, and the record says so. Used by the
    export stage (serving.export) and by v9's evaluation through ONNX Runtime. Returns what
    was done (exporter, opset, fallback reason, dynamic axes, torch version)."""
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    module = logits_only(model)
    ids, mask = example_inputs(model.config)
    max_seq = int(getattr(model.config, "max_position_embeddings", 8192) or 8192)
    # One self-contained file below protobuf's 2 GB limit; weights beside it above.
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000
    info: dict[str, Any] = {"exporter": exporter, "opset": opset, "fallback_reason": None}

    def dynamo() -> None:
        batch = torch.export.Dim("batch", min=1, max=65536)
        seq = torch.export.Dim("sequence", min=2, max=max_seq)
        torch.onnx.export(
            module, (ids, mask), str(path), dynamo=True, opset_version=opset,
            input_names=ONNX_INPUTS, output_names=ONNX_OUTPUTS,
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            external_data=external, verbose=False,
        )

    def torchscript() -> None:
        torch.onnx.export(
            module, (ids, mask), str(path), dynamo=False, opset_version=opset,
            input_names=ONNX_INPUTS, output_names=ONNX_OUTPUTS,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch"},
            },
        )

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer/deprecation chatter; parity is the real check
        if exporter == "dynamo":
            try:
                dynamo()
            except Exception as e:  # any exporter failure: record it and use the other one
                info["fallback_reason"] = f"dynamo export failed: {type(e).__name__}: {str(e)[:300]}"
                info["exporter"] = "torchscript"
                for p in path.parent.glob(path.name + "*"):
                    p.unlink()
                torchscript()
        else:
            torchscript()
    info["external_data"] = external
    info["dynamic_axes"] = {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"],
                            "logits": ["batch"]}
    info["torch_version"] = torch.__version__
    return info
