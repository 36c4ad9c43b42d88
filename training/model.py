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
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LABELS = {0: "safe", 1: "vulnerable"}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Small enough to train in minutes on 2 CPU cores, large enough to learn something.
TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
    "global_attn_every_n_layers": 2,
    "local_attention": 64,
    "vocab_size": 4096,
}


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
