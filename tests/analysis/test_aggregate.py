"""Aggregation over a synthetic results tree written to the docs/interfaces.md schemas."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.aggregate import aggregate, canonical_variant, load_label
from analysis.synthetic import write_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("results"))


def test_training_summary_uses_repeats(tree):
    agg = aggregate(tree)
    v0 = agg.train["v0"]
    assert v0["n"] == 3 and sorted(v0["runs"]) == ["v0-r1", "v0-r2", "v0-r3"]
    m = v0["metrics"]["energy_kwh.training"]
    runs = agg.train_runs[(agg.train_runs["variant"] == "v0") & agg.train_runs["used"]]
    assert m["mean"] == pytest.approx(runs["energy_kwh.training"].mean())
    assert m["ci95"][0] < m["mean"] < m["ci95"][1]
    assert v0["label"] == "estimated · replay"


def test_single_run_variant_has_null_ci(tree):
    agg = aggregate(tree, write=False)
    v1 = agg.train["v1"]
    assert v1["n"] == 1
    assert v1["metrics"]["energy_kwh.training"]["ci95"] is None


def test_failed_and_incomplete_listed_never_averaged(tree):
    agg = aggregate(tree, write=False)
    assert "v13" not in agg.train
    f = agg.failed
    got = {(r["stage"], r["variant"], r["status"]) for r in f.to_dict(orient="records")}
    assert ("train", "v13", "failed") in got
    assert ("train", "v0", "incomplete") in got
    assert ("load", "v0", "failed") in got  # triton
    assert ("load", "v0", "incomplete") in got  # killed-run folder
    assert not any(k.startswith("triton__") for k in agg.serve)


def test_serving_summary_per_engine_variant(tree):
    agg = aggregate(tree, write=False)
    key = "onnxruntime__v0__onnx__closed-u8__replay"
    e = agg.serve[key]
    assert e["n"] == 3 and e["engine"] == "onnxruntime" and e["format"] == "onnx"
    used = agg.load_runs[(agg.load_runs["engine"] == "onnxruntime") & (agg.load_runs["variant"] == "v0")
                         & agg.load_runs["used"]]
    assert e["metrics"]["energy_per_1k_wh.gross"]["mean"] == pytest.approx(used["energy_per_1k_wh.gross"].mean())
    assert len(e["power_csv"]) == 3
    assert {"pytorch__v0__pytorch__closed-u8__replay", "onnxruntime__v2+v7__onnx__closed-u8__replay"} <= set(agg.serve)


def test_outputs_written_atomically_and_parse(tree):
    agg = aggregate(tree)
    doc = json.loads((tree / "aggregated_metrics.json").read_text())
    assert set(doc) >= {"train", "serve", "failed", "ci_note"}
    assert "null when n = 1" in doc["ci_note"]
    for name in ("train_runs", "load_runs", "train_summary", "serve_summary", "failed"):
        assert (tree / "tables" / f"{name}.csv").stat().st_size > 0
    ts = pd.read_csv(tree / "tables" / "train_summary.csv")
    assert set(ts.columns) >= {"variant", "metric", "mean", "ci95_lo", "ci95_hi", "n"}
    assert not list(tree.glob("**/.*.tmp"))  # no temp files left behind
    assert agg.written


def test_latest_invocation_wins_and_older_runs_are_superseded(tmp_path):
    base = {"status": "ok", "variant": "v0", "energy_kwh": {"training": 1.0}, "f1": 0.5,
            "energy_kind": "estimated", "energy_source": {"training": "estimate"}}
    for rid, e in (("old", 100.0), ("new1", 1.0), ("new2", 3.0)):
        p = tmp_path / "train" / "v0" / "runs" / rid / "result.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({**base, "run_id": rid, "energy_kwh": {"training": e}}))
    (tmp_path / "train" / "v0" / "result.json").write_text(
        json.dumps({**base, "run_id": "new2", "runs": ["new1", "new2"], "n_repeats": 2}))
    agg = aggregate(tmp_path, write=False)
    assert agg.train["v0"]["metrics"]["energy_kwh.training"]["mean"] == pytest.approx(2.0)
    assert agg.metrics["superseded"]["train"] == 1


def test_load_embedded_repeats_and_bare_summary(tmp_path):
    rep = {"status": "ok", "engine": "pytorch", "variant": "v2_lora_peft", "format": "pytorch",
           "load": {"model": "open", "rps": 5}, "energy_per_1k_wh": {"gross": 1.0, "net": 0.5},
           "latency_ms": {"p99": 10.0}, "energy_source": "estimate", "energy_kind": "estimated"}
    top = {**rep, "run_id": "r1", "repeats": [rep, {**rep, "energy_per_1k_wh": {"gross": 3.0, "net": 1.0}},
                                              {**rep, "status": "failed", "failure_reason": "too many errors"}]}
    d = tmp_path / "load" / "pytorch__v2" / "r1"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(top))
    # a second setting whose summary has no repeats at all → n = 1
    d2 = tmp_path / "load" / "onnxruntime__v0" / "r9"
    d2.mkdir(parents=True)
    (d2 / "summary.json").write_text(json.dumps({**rep, "engine": "onnxruntime", "variant": "v0",
                                                 "format": "onnx", "load": {"model": "closed", "users": 8}}))
    agg = aggregate(tmp_path, write=False)
    e = agg.serve["pytorch__v2__pytorch__open-r5__estimate"]
    assert e["variant"] == "v2"  # alias normalised
    assert e["n"] == 2 and e["metrics"]["energy_per_1k_wh.gross"]["mean"] == pytest.approx(2.0)
    assert agg.serve["onnxruntime__v0__onnx__closed-u8__estimate"]["metrics"]["energy_per_1k_wh.gross"]["ci95"] is None
    assert (agg.failed["failure_reason"] == "too many errors").sum() == 1


@pytest.mark.parametrize("layout", ["empty", "missing", "train-only", "load-only", "garbage"])
def test_partial_trees_never_crash(tmp_path, tree, layout):
    import shutil

    root = tmp_path / "r"
    if layout == "empty":
        root.mkdir()
    elif layout == "train-only":
        shutil.copytree(tree / "train", root / "train")
    elif layout == "load-only":
        shutil.copytree(tree / "load", root / "load")
    elif layout == "garbage":
        (root / "train" / "v0").mkdir(parents=True)
        (root / "train" / "v0" / "result.json").write_text("{not json")
        (root / "load" / "x__v0" / "r").mkdir(parents=True)
        (root / "load" / "x__v0" / "r" / "summary.json").write_text("[1, 2]")
    agg = aggregate(root)
    assert (root / "aggregated_metrics.json").exists()
    if layout == "garbage":
        assert set(agg.failed["status"]) == {"unreadable"} and len(agg.failed) == 2
    if layout == "train-only":
        assert agg.train and not agg.serve
    if layout == "load-only":
        assert agg.serve and not agg.train


def test_helpers():
    assert canonical_variant("v2_lora_peft+v7_f16") == "v2+v7"
    assert canonical_variant("custom") == "custom"
    assert load_label({"model": "closed", "users": 8}) == "closed-u8"
    assert load_label({"model": "open", "rps": 20}) == "open-r20"
    assert load_label(None) == "default"


def test_variant_folder_without_any_result_is_incomplete(tmp_path):
    (tmp_path / "train" / "v3").mkdir(parents=True)
    (tmp_path / "train" / "v3" / "training_progress.log").write_text("step 1\n")
    agg = aggregate(tmp_path, write=False)
    rows = agg.failed.to_dict(orient="records")
    assert [(r["variant"], r["status"]) for r in rows] == [("v3", "incomplete")]


def test_runs_differing_in_batch_workers_or_meter_are_separate_settings(tmp_path):
    rep = {"status": "ok", "engine": "onnxruntime", "variant": "v0", "format": "onnx",
           "energy_per_1k_wh": {"gross": 1.0, "net": 0.5, "server": 0.4}, "energy_kind": "estimated"}
    runs = {
        "a": {"load": {"model": "closed", "users": 8}, "energy_source": "estimate"},
        "b": {"load": {"model": "closed", "users": 8, "batch": 4}, "energy_source": "estimate"},
        "c": {"load": {"model": "closed", "users": 8, "workers": 2}, "energy_source": "estimate"},
        "d": {"load": {"model": "closed", "users": 8}, "energy_source": "rapl"},
        "e": {"load": {"model": "open", "rps": 20, "pool": 40}, "energy_source": "estimate"},
    }
    for rid, extra in runs.items():
        d = tmp_path / "load" / "onnxruntime__v0" / rid
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({**rep, **extra, "run_id": rid}))
    agg = aggregate(tmp_path, write=False)
    assert set(agg.serve) == {
        "onnxruntime__v0__onnx__closed-u8__estimate", "onnxruntime__v0__onnx__closed-u8·b4__estimate",
        "onnxruntime__v0__onnx__closed-u8·w2__estimate", "onnxruntime__v0__onnx__closed-u8__rapl",
        "onnxruntime__v0__onnx__open-r20-p40__estimate"}
    assert agg.metrics["superseded"]["load"] == 0  # nothing superseded another setting


def test_flagged_training_repeats_are_left_out_like_training_left_them_out(tmp_path):
    base = {"status": "ok", "variant": "v0", "f1": 0.5, "energy_kind": "estimated",
            "energy_source": {"training": "estimate"}}
    for rid, e, flags in (("r1", 1.0, []), ("r2", 3.0, []), ("r3", 100.0, ["resumed_from_step_4"])):
        p = tmp_path / "train" / "v0" / "runs" / rid / "result.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({**base, "run_id": rid, "energy_kwh": {"training": e}, "flags": flags}))
    (tmp_path / "train" / "v0" / "result.json").write_text(json.dumps(
        {**base, "run_id": "r3", "runs": ["r1", "r2", "r3"], "n_repeats": 3, "energy_kwh": {"training": 2.0},
         "excluded": [{"run_id": "r3", "flags": ["resumed_from_step_4"]}]}))
    agg = aggregate(tmp_path, write=False)
    assert agg.train["v0"]["metrics"]["energy_kwh.training"]["mean"] == pytest.approx(2.0)
    notes = set(agg.train_runs["note"])
    assert "flagged (resumed_from_step_4): left out of means" in notes
