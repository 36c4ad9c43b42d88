"""MODEL=bench: the random-init ModernBERT-base-shaped artifact builds offline and reloads."""

from __future__ import annotations

import json

import pytest

from study.paths import Paths
from training.bench_model import BENCH_SHAPE, PROVENANCE_FILE, build


@pytest.mark.slow
def test_bench_model_has_modernbert_base_shape_and_says_it_is_untrained(tmp_path):
    out = build(Paths(tmp_path / "art", tmp_path / "res"))
    assert out == tmp_path / "art" / "bench" / "model"
    config = json.loads((out / "config.json").read_text())
    for key, value in BENCH_SHAPE.items():
        assert config[key] == value, key
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["trained"] is False
    assert 140e6 < provenance["params"] < 160e6  # ModernBERT-base: 149.6 M with the classifier head
    assert build(Paths(tmp_path / "art", tmp_path / "res")) == out  # built once, then reused
