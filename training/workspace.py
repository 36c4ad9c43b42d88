"""What a training or compression run keeps on disk between runs: its paths, its lock, and the
tokenisation cache.

* :class:`RunPaths` — one variant's training files, a view over :class:`study.paths.Paths`
  (the one module that spells the layout);
* :func:`variant_lock` — ``<variant results dir>/.lock`` (flock): two runs of one variant would
  share and delete each other's checkpoints and race on ``result.json``;
* :func:`tokenize` — the ``datasets`` tokenisation, cached under ``$GPS_CACHE_DIR/datasets``
  (default ``.cache/datasets`` in the repository) and keyed by everything that changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from study.paths import REPO_ROOT, Paths

CACHE_ENV = "GPS_CACHE_DIR"
RESULT_FILE = "result.json"
PROGRESS_LOG = "training_progress.log"
LOCK_FILE = ".lock"


# -- paths --------------------------------------------------------------------------------------


class VariantPaths:
    """Where one run of a variant writes: its model directory and its results folder
    (``result.json`` and the run lock), a view over :class:`~study.paths.Paths`."""

    def __init__(self, variant: str, variant_dir: Path, paths: Paths) -> None:
        self.variant = variant
        self.paths = paths
        self.variant_dir = variant_dir
        self.artifact_dir = paths.model_dir(variant)
        self.result = variant_dir / RESULT_FILE


class RunPaths(VariantPaths):
    """One variant's training files (roots from ``paths``, else ``$ARTIFACTS`` /
    ``$RESULTS_DIR``, else the defaults): ``<results>/train/<variant>/`` also holds the
    progress log, the runs and the checkpoints."""

    def __init__(self, variant: str, paths: Paths | None = None) -> None:
        paths = paths or Paths.from_env()
        super().__init__(variant, paths.train(variant), paths)
        self.progress_log = self.variant_dir / PROGRESS_LOG
        self.runs_dir = paths.train_runs(variant)
        self.checkpoints_dir = paths.checkpoints(variant)

    def run_result(self, run_id: str) -> Path:
        return self.paths.train_run(self.variant, run_id) / RESULT_FILE

    def checkpoint(self, seed: int) -> Path:
        return self.checkpoints_dir / f"seed-{seed}"


# -- the lock -----------------------------------------------------------------------------------


class Busy(RuntimeError):
    """Another process is training (or compressing) the same variant into the same results root."""


@contextmanager
def variant_lock(paths: VariantPaths):
    """Hold ``<paths.variant_dir>/.lock`` (flock) for the run; :class:`Busy` (naming the
    holder's pid) when another process holds it. Released when the process dies."""
    import fcntl

    paths.variant_dir.mkdir(parents=True, exist_ok=True)
    f = (paths.variant_dir / LOCK_FILE).open("a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise Busy(f"another training run of {paths.variant} is writing {paths.variant_dir} "
                       f"(pid {holder}); wait for it or use --results-dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


# -- the tokenisation cache ---------------------------------------------------------------------


def tokenize_cache_dir() -> Path:
    """``$GPS_CACHE_DIR/datasets`` (read at call time), default ``<repo>/.cache/datasets``."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache") / "datasets"


def _cache_key(tokenizer, texts: list[str], labels: list[int], max_length: int, padding: str) -> str:
    key = hashlib.sha256()
    if hasattr(tokenizer, "backend_tokenizer"):
        # the vocabulary and pipeline, without the truncation/padding state a previous call left
        # behind (max_length and padding are keyed below)
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        key.update(json.dumps(spec, sort_keys=True).encode())
    else:
        key.update(repr(tokenizer).encode())
    key.update(f"{max_length}|{padding}|{len(texts)}".encode())
    for t, y in zip(texts, labels, strict=True):
        key.update(t.encode("utf-8", "surrogatepass"))
        key.update(b"\x00%d\x00" % int(y))
    return key.hexdigest()[:24]


def tokenize(tokenizer, texts: list[str], labels: list[int], max_length: int, padding: str,
             cache_dir: Path | None = None, reuse_cache: bool = True) -> tuple[Any, dict[str, Any]]:
    """Tokenise with the ``datasets`` library, cached on disk.

    Truncates to ``max_length`` tokens and pads to it (``max_length``) or not at all
    (``longest``: the collator pads each batch). The cache file is keyed by the texts, labels,
    tokenizer and settings, so a change of any of them never reuses a stale file. With
    ``reuse_cache`` an existing file is loaded instead of tokenising (``cache_hit`` in the
    returned info: the data stage then did not do the whole work); without, the file is
    rewritten. Only the texts and labels enter the dataset (no ``group``/``pair`` column
    reaches the Trainer). Returns the dataset and truncation statistics.
    """
    import datasets

    cache = Path(cache_dir or tokenize_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    cache_file = cache / f"tokenized-{_cache_key(tokenizer, texts, labels, max_length, padding)}.arrow"
    cache_hit = reuse_cache and cache_file.exists()

    def encode(batch):
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length,
                        padding="max_length" if padding == "max_length" else False)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": batch["label"], "n_tokens": [int(sum(m)) for m in enc["attention_mask"]]}

    raw = datasets.Dataset.from_dict({"text": list(texts), "label": [int(y) for y in labels]})
    ds = raw.map(encode, batched=True, remove_columns=["text", "label"],
                 cache_file_name=str(cache_file), load_from_cache_file=reuse_cache,
                 desc="tokenise", keep_in_memory=False)
    n_tokens = ds["n_tokens"]
    ds = ds.remove_columns(["n_tokens"])
    n = len(ds)
    n_trunc = sum(1 for k in n_tokens if k >= max_length)
    return ds, {
        "n": n, "max_length": max_length, "padding": padding,
        "truncated": n_trunc, "truncated_share": n_trunc / n if n else 0.0,
        "mean_tokens": sum(n_tokens) / n if n else 0.0,
        "library": f"datasets {datasets.__version__}", "cache_file": str(cache_file),
        "cache_hit": cache_hit,
    }
