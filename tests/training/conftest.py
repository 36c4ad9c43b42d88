"""Fixtures for the training tests: a tiny, fast configuration and an in-process runner.

Every run here uses a ModernBERT with hidden size 32 and 2 layers, 64 training examples of
at most 64 tokens, 2 optimizer steps and 16 test examples, the ``estimate`` meter (no
hardware needed) and no idle baseline — a whole five-stage run takes a few seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GPS_NO_PROGRESS", "1")

TINY_SETS = [
    "model.tiny.hidden_size=32",
    "model.tiny.num_hidden_layers=2",
    "model.tiny.num_attention_heads=2",
    "model.tiny.intermediate_size=64",
    "model.tiny.max_position_embeddings=64",
    "model.tiny.vocab_size=512",
    "data.tiny_max_length=64",
    "data.train_limit=64",
    "data.eval_limit=16",
    "training.max_steps=2",
    "training.logging_steps=1",
    "runtime.idle_s=0",
    "runtime.meter=estimate",
    "runtime.threads=1",
]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def run_tiny(tmp_path: Path, monkeypatch):
    """``run_tiny("v2", extra_sets=[...], repeats=1)`` → (result dict, RunPaths), in-process.
    Each test has its own tokenisation cache (tmp_path), so cache hits are the test's own."""
    from study.paths import Paths
    from training.config import resolve
    from training.train import RunPaths, run_variant
    from training.workspace import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))

    def run(variant: str, extra_sets=(), repeats: int = 1, hw=None, include_flagged: bool = False):
        sets = list(TINY_SETS)
        if "v8" in variant.split("+"):
            sets.remove("data.tiny_max_length=64")  # v8's own trimmed length (64) applies
        cfg = resolve(variant, [*sets, *extra_sets])
        paths = RunPaths(variant, Paths(artifacts=tmp_path / "artifacts", results=tmp_path / "results"))
        res = run_variant(variant, cfg, repeats=repeats, paths=paths, hw=hw, include_flagged=include_flagged)
        return res, paths

    return run


@pytest.fixture
def tiny_sets() -> list[str]:
    """The ``--set`` items of the tiny, fast configuration."""
    return list(TINY_SETS)


@pytest.fixture
def cli_env():
    """``cli_env(**extra)`` → environment for a real ``python -m training.train`` subprocess."""

    def make(**extra: str) -> dict[str, str]:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root), "GPS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
        env.update(extra)
        return env

    return make
