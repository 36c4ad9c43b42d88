"""Stage ``data``: load BigVul, build paired examples, split by group, get the tokenizer,
tokenise the training split (:func:`training.workspace.tokenize`, cached)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.config import Config
from training.results import TOKENISATION_CACHE_HIT
from training.runtime import is_worker, rank
from training.workspace import tokenize

if TYPE_CHECKING:
    from training.repeat import Repeat


def _tokenizer(cfg: Config, train_texts, tok_dir: Path):
    from transformers import AutoTokenizer

    if cfg.is_tiny:
        from training.model import train_tokenizer

        if (tok_dir / "tokenizer.json").exists():
            # resuming: the checkpoint's weights belong to *this* vocabulary
            return AutoTokenizer.from_pretrained(tok_dir)
        tokenizer = train_tokenizer(train_texts, vocab_size=cfg.model.tiny.vocab_size, max_length=cfg.max_length)
        if not (is_worker() and rank() != 0):
            tokenizer.save_pretrained(tok_dir)
        return tokenizer
    try:
        return AutoTokenizer.from_pretrained(cfg.model.name)
    except OSError as e:
        raise RuntimeError(f"tokenizer for model {cfg.model.name!r} is not available offline ({e})") from None


def data_stage(cfg: Config, ckpt_dir: Path, reuse_tokenisation: bool = False) -> dict[str, Any]:
    """Load BigVul, build paired examples, split by group, get the tokenizer, tokenise train
    (loading an earlier identical tokenisation only with ``reuse_tokenisation``). The tiny
    model's tokenizer is trained here and kept in ``ckpt_dir/tokenizer`` for a resume."""
    from training.data import (
        class_balance,
        load_bigvul,
        make_examples,
        resolve_data_path,
        split_by_group,
    )

    path = resolve_data_path(cfg.data.path)
    rows = load_bigvul(path)
    ex, stats = make_examples(rows, paired=cfg.data.paired)
    splits = split_by_group(ex, seed=cfg.data.split_seed, fractions=tuple(cfg.data.fractions))
    train, test = splits["train"], splits["test"]
    if cfg.data.train_limit and len(train) > cfg.data.train_limit:
        train = train.sample(n=cfg.data.train_limit, random_state=cfg.data.split_seed).reset_index(drop=True)
    if cfg.data.eval_limit and len(test) > cfg.data.eval_limit:
        test = test.sample(n=cfg.data.eval_limit, random_state=cfg.data.split_seed).reset_index(drop=True)
    if train["label"].nunique() < 2:
        raise ValueError(f"the training split has one class only ({class_balance(train)}); "
                         "enable data.paired or use more data")

    tokenizer = _tokenizer(cfg, train["text"], ckpt_dir / "tokenizer")
    tokenizer.model_max_length = cfg.max_length
    train_ds, trunc = tokenize(tokenizer, train["text"].tolist(), train["label"].tolist(),
                               cfg.max_length, cfg.data.padding, reuse_cache=reuse_tokenisation)
    counts = asdict(stats)
    return {
        "path": path, "train": train, "test": test, "validation": splits["validation"],
        "tokenizer": tokenizer, "train_ds": train_ds,
        "info": {
            "path": str(path), "rows": counts.pop("rows"), "paired": cfg.data.paired, **counts,
            "split_seed": cfg.data.split_seed,
            "fractions": list(cfg.data.fractions), "train_used": len(train), "test_used": len(test),
            "train_tokenization": trunc, "tokenizer": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
        },
        "class_balance": {
            "train": class_balance(train), "validation": class_balance(splits["validation"]),
            "test": class_balance(test),
        },
    }


def run(rep: Repeat, ckpt_dir: Path, reuse_tokenisation: bool) -> dict[str, Any]:
    """The stage in its window; records ``data``, ``class_balance`` and the cache-hit flag."""
    with rep.stage("data"):
        d = data_stage(rep.cfg, ckpt_dir, reuse_tokenisation=reuse_tokenisation)
    rep.result["data"] = d["info"]
    if d["info"]["train_tokenization"]["cache_hit"]:
        rep.result["flags"].append(TOKENISATION_CACHE_HIT)
    rep.result["class_balance"] = d["class_balance"]
    return d
