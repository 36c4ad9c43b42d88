"""``MODEL=bench``: a ModernBERT-base-shaped classifier with random weights, for benchmarks.

Built from the config alone, never trained: 22 layers, hidden 768, 12 heads, intermediate 1152,
vocabulary 50,368 (ModernBERT-base's shape, :data:`BENCH_SHAPE`), so that an engine comparison
measures model compute and not the HTTP/Python path around a tiny model. Its predictions mean
nothing (random init): it exists to be exported and served (``make bench MODEL=bench``).

Tokenizer (offline, no hub): a byte-level BPE trained here on the *training split* of the data
with a target of 50,368 tokens (:func:`training.model.train_tokenizer`). The BigVul sample has
fewer distinct merges than that (≈35,600 tokens reached), so the token ids stay below the
tokenizer's size and the embedding rows above it are never looked up. That changes nothing the
bench measures: an embedding lookup costs no FLOPs, the matmuls are the same.

The artifact is a normal ``<artifacts>/bench/model/`` (safetensors + tokenizer + ``split.json``)
plus ``bench_model.json`` saying what it is. ``python -m training.bench_model`` builds it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from study.paths import Paths

BENCH_VARIANT = "bench"
PROVENANCE_FILE = "bench_model.json"

#: ModernBERT-base (answerdotai/ModernBERT-base config.json), the architecture fields
BENCH_SHAPE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 22,
    "num_attention_heads": 12,
    "intermediate_size": 1152,
    "vocab_size": 50368,
    "max_position_embeddings": 8192,
    "global_attn_every_n_layers": 3,
    "local_attention": 128,
}


def build_bench_model(tokenizer, seed: int = 42, attn_implementation: str = "sdpa"):
    """The random-init classifier of :data:`BENCH_SHAPE` (vocabulary 50,368 whatever the
    tokenizer's size)."""
    from training.model import build_tiny_model

    shape = dict(BENCH_SHAPE)
    vocab = shape.pop("vocab_size")
    model = build_tiny_model(tokenizer, seed=seed, attn_implementation=attn_implementation, **shape)
    if model.config.vocab_size != vocab:  # build_tiny_model sizes it to the tokenizer
        model.resize_token_embeddings(vocab, mean_resizing=False)
        model.config.vocab_size = vocab
    return model


def build(paths: Paths, *, data: str | None = None, seed: int = 42, max_length: int = 8192,
          force: bool = False) -> Path:
    """Write ``<artifacts>/bench/model/`` (atomically) unless it exists; returns the directory."""
    out = paths.model_dir(BENCH_VARIANT)
    if (out / "config.json").is_file() and not force:
        return out
    from training.data import load_split, resolve_data_path
    from training.model import count_params, train_tokenizer
    from training.stages.system import save_artifact_atomically

    data_path = resolve_data_path(data)
    train = load_split("train", data_path=data_path, seed=seed)
    tokenizer = train_tokenizer(train["text"], vocab_size=BENCH_SHAPE["vocab_size"], max_length=max_length)
    model = build_bench_model(tokenizer, seed=seed)
    split = {"data_path": str(data_path), "split_seed": seed, "fractions": [0.8, 0.1, 0.1], "paired": True}
    provenance = {
        "model": "bench", "trained": False, "init": "random (ModernBertConfig defaults, seed "
        f"{seed})", "shape": BENCH_SHAPE, **count_params(model),
        "tokenizer": {"kind": "byte-level BPE trained on the training split",
                      "target_vocab": BENCH_SHAPE["vocab_size"], "size": len(tokenizer)},
    }
    return save_artifact_atomically(model, tokenizer, out, split=split,
                                    extra_json={PROVENANCE_FILE: provenance})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.bench_model",
        description="Build the MODEL=bench artifact: a random-init ModernBERT-base-shaped "
        "classifier (22 layers, hidden 768) with a tokenizer trained on the training split; "
        "no training.",
    )
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS)")
    p.add_argument("--data", default=None, help="BigVul CSV for the tokenizer (default: $DATA or the sample)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--force", action="store_true", help="rebuild even when it exists")
    args = p.parse_args(argv)
    out = build(Paths.from_env(artifacts=args.artifacts_dir), data=args.data, seed=args.seed,
                force=args.force)
    print(f"bench model: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
