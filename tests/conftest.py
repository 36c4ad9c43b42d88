"""Shared fixtures: a tiny ModernBERT artifact in the standard layout, free loopback ports.

Area-specific fixtures live in ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The same environment the Makefile exports, so `pytest` run by hand behaves like `make test`.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
)
_libdir = sysconfig.get_config_var("LIBDIR") or ""
if _libdir and _libdir not in os.environ.get("LD_LIBRARY_PATH", ""):
    # PyTriton's tritonserver links libpython; pyenv keeps it outside the default search path.
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (_libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


from study.process import free_port  # noqa: E402,F401  (the one home of it; tests import it from here)


@pytest.fixture(scope="session")
def artifacts_root(tmp_path_factory) -> Path:
    """An ``artifacts/`` tree holding ``v0/model/``: a tiny, *untrained* ModernBERT classifier
    with a tokenizer trained on the sample's training split (safetensors, save_pretrained).

    Untrained weights are enough for protocol, parity and load tests; training is tested in
    tests/training.
    """
    import torch

    from training.data import load_split
    from training.model import build_tiny_model, save_artifact, train_tokenizer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("artifacts")
    train = load_split("train")
    tokenizer = train_tokenizer(train["text"], vocab_size=2048, max_length=256)
    model = build_tiny_model(
        tokenizer, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=256,
    )
    model.eval()
    save_artifact(model, tokenizer, root / "v0" / "model")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(artifacts_root) -> Path:
    return artifacts_root / "v0" / "model"


@pytest.fixture(scope="session")
def test_split():
    """The held-out test split of the embedded sample: DataFrame[text, label, group]."""
    from training.data import load_split

    return load_split("test")
