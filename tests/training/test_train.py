"""Whole five-stage runs, in-process, on the tiny configuration (see conftest.py)."""

from __future__ import annotations

import json

import pytest

from training.results import ENERGY_KEYS, REQUIRED_KEYS, STAGES

# Every variant that runs on CPU, one per distinct code path. v15–v22 differ from v13/v14
# only in the pruning count (covered by test_model/test_config); v9 and v11 are `slow` below.
CPU_VARIANTS = ["v0", "v1", "v2", "v3", "v4", "v6", "v7", "v8", "v10", "v12", "v13", "v14", "v2+v7+v8"]


def _check_result(res: dict, paths) -> None:
    assert res["status"] == "ok", res.get("failure_reason")
    on_disk = json.loads(paths.result.read_text())
    assert on_disk["run_id"] == res["run_id"]
    assert all(k in on_disk for k in REQUIRED_KEYS), set(REQUIRED_KEYS) - set(on_disk)
    for s in STAGES:
        assert on_disk["energy_kwh"][s] is not None and on_disk["energy_kwh"][s] >= 0
        assert on_disk["energy_source"][s]
        rec = on_disk["energy"][s]
        assert rec["source"] and rec["kind"] in ("measured", "estimated") and rec["duration_s"] >= 0
    assert on_disk["energy_kind"] in ("measured", "estimated")
    # totals: the outer window is the whole repeat; stages + export + unaccounted = total
    e, d = on_disk["energy_kwh"], on_disk["duration_s"]
    assert set(e) == set(ENERGY_KEYS) and e["unaccounted"] is not None
    parts = sum(e[s] or 0.0 for s in (*STAGES, "export"))
    assert parts + e["unaccounted"] == pytest.approx(e["total"], rel=1e-9)
    assert e["unaccounted"] >= -1e-6 * e["total"]  # windows inside the outer one add up to ≤ it
    assert on_disk["energy"]["run"]["duration_s"] == pytest.approx(d["total"], abs=0.5)
    assert sum(d[s] for s in d if s not in ("unaccounted", "total")) + d["unaccounted"] == pytest.approx(d["total"])
    assert on_disk["co2_kg"] is not None and on_disk["co2_kg"] > 0
    assert on_disk["flags"] == [] and on_disk["excluded"] == [] and on_disk["n_used"] == 1
    assert 0.0 <= on_disk["f1"] <= 1.0 and on_disk["latency_ms"] > 0
    for k in ("mcc", "balanced_accuracy", "roc_auc", "baseline_f1"):
        assert on_disk[k] is not None and on_disk[k] == on_disk["evaluation"][k], k
    assert -1.0 <= on_disk["mcc"] <= 1.0 and isinstance(on_disk["at_chance"], bool)
    cb_test = on_disk["class_balance"]["test"]
    pi = cb_test["positive"] / cb_test["n"]
    assert on_disk["baseline_f1"] == pytest.approx(2 * pi / (1 + pi))
    assert set(on_disk["class_balance"]) == {"train", "validation", "test"}
    assert on_disk["class_balance"]["test"]["n"] == on_disk["evaluation"]["n_evaluated"]
    assert on_disk["model"]["params"] > 0 and on_disk["model"]["size_mb"] > 0
    assert on_disk["environment"] and on_disk["config"]["training"]["max_steps"] == 2
    assert (paths.artifact_dir / "model.safetensors").exists()
    assert (paths.artifact_dir / "tokenizer.json").exists()
    split = json.loads((paths.artifact_dir / "split.json").read_text())
    assert split["split_seed"] == on_disk["config"]["data"]["split_seed"]
    for rid in on_disk["runs"]:
        assert json.loads(paths.run_result(rid).read_text())["n_repeats"] == 1


@pytest.mark.parametrize("variant", CPU_VARIANTS)
def test_cpu_variant_runs_a_handful_of_steps(run_tiny, variant):
    res, paths = run_tiny(variant)
    _check_result(res, paths)
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(paths.artifact_dir)  # loadable as is
    cfg = res["config"]
    if variant == "v3":
        assert res["evaluation"]["quantization"] == "dynamic_int8" and res["plan"]["eval_quantization"] == "dynamic_int8"
    if variant in ("v7", "v2+v7+v8"):
        assert res["plan"]["precision"] == "bf16"
    if variant == "v13":
        assert res["model"]["pruning"]["dropped"] == 1
        assert res["model"]["pruning"]["layers_after"] == 1 and res["notes"]
    if variant == "v14":
        assert res["model"]["pruning"]["side"] == "bottom"
    if "v8" in variant:
        assert cfg["data"]["tiny_max_length"] == 64
        assert res["data"]["train_tokenization"]["max_length"] == 64
    if variant == "v2":
        assert res["model"]["trainable_params"] < res["model"]["params"]
        assert res["model"]["params_artifact"] < res["model"]["params"]  # adapters merged away


def test_refused_variant_writes_a_failed_result(run_tiny):
    from training.runtime import Refused

    with pytest.raises(Refused, match="NVML"):
        run_tiny("v5")


def test_refused_result_file(run_tiny, tmp_path):
    from training.runtime import Refused

    with pytest.raises(Refused):
        run_tiny("v5")
    res = json.loads((tmp_path / "results" / "train" / "v5" / "result.json").read_text())
    assert res["status"] == "failed" and res["failure_reason"].startswith("refused:")
    assert all(k in res for k in REQUIRED_KEYS)


def test_other_split_seed_and_awkward_functions(run_tiny):
    """Train on a differently seeded split, then evaluate the artifact on long, empty and
    non-ASCII functions as well as the real test split."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.evaluate import predict_pytorch, summarise

    res, paths = run_tiny("v0", ["data.split_seed=7", "data.eval_limit=0", "training.max_steps=3"])
    assert res["status"] == "ok", res.get("failure_reason")
    assert res["data"]["split_seed"] == 7 and res["class_balance"]["test"]["n"] > 150
    model = AutoModelForSequenceClassification.from_pretrained(paths.artifact_dir)
    tok = AutoTokenizer.from_pretrained(paths.artifact_dir)
    weird = ["", "   ", "x" * 200_000, "int f() {\n" + "  a++;\n" * 5000 + "}",
             "/* ünïcødé 漢字 🐛 */ void f() { printf(\"é\"); }", "\x00\x01\x02 binary \xff"]
    logits, wall_s = predict_pytorch(model, tok, weird, max_length=64, batch_size=4)
    assert logits.shape == (len(weird), 2)
    m = summarise([0, 0, 1, 1, 0, 1], logits, wall_s)
    assert m["n_evaluated"] == 6 and m["latency_ms"] > 0
    # the whole paired test split: vulnerable functions and their fixes side by side
    assert res["evaluation"]["n_pairs"] > 50 and 0.0 <= res["pair_accuracy"] <= 1.0


def test_repeats_write_every_run_and_a_ci(run_tiny):
    res, paths = run_tiny("v0", ["training.max_steps=1", "runtime.idle_s=0.3"], repeats=2)
    assert res["status"] == "ok" and res["n_repeats"] == 2 and len(res["runs"]) == 2
    seeds = [json.loads(paths.run_result(r).read_text())["seed"] for r in res["runs"]]
    assert seeds == [42, 43]
    assert "energy_kwh.training" in res["ci95"] and "f1" in res["ci95"]
    lo, hi = res["ci95"]["energy_kwh.training"]
    assert lo <= res["energy_kwh"]["training"] <= hi
    # one idle baseline for the invocation, behind every stage's net energy
    assert res["energy"]["idle"]["duration_s"] > 0 and res["idle_w"] > 0
    assert res["energy_net_kwh"]["training"] is not None and res["energy"]["training"]["idle_w"] == res["idle_w"]
    log = paths.progress_log.read_text()
    assert all(f"run={r}" in log for r in res["runs"]) and "loss=" in log


def test_tokenisation_cache_hit_flags_the_repeat_and_keeps_it_out_of_the_means(run_tiny):
    """runtime.tokenize_cache=always: the 2nd repeat loads the 1st one's tokenisation, is
    flagged, and the means are the 1st repeat's alone (unless include_flagged)."""
    sets = ["training.max_steps=1", "runtime.tokenize_cache=always"]
    res, paths = run_tiny("v0", sets, repeats=2)
    first, second = (json.loads(paths.run_result(r).read_text()) for r in res["runs"])
    assert first["flags"] == [] and not first["data"]["train_tokenization"]["cache_hit"]
    assert second["flags"] == ["tokenisation_cache_hit"] and second["data"]["train_tokenization"]["cache_hit"]
    assert res["n_used"] == 1 and res["excluded"] == [{"run_id": second["run_id"], "flags": ["tokenisation_cache_hit"]}]
    assert res["f1"] == first["f1"] and res["energy_kwh"]["total"] == first["energy_kwh"]["total"]
    assert "f1" not in res["ci95"] and any("left out of the means" in n for n in res["notes"])
    # the default (resume) tokenises every fresh repeat: nothing flagged, both averaged
    res2, _ = run_tiny("v0", ["training.max_steps=1"], repeats=2)
    assert res2["n_used"] == 2 and res2["excluded"] == [] and "f1" in res2["ci95"]


def test_tokenize_keeps_only_model_columns_and_reports_cache_hits(tmp_path):
    from training.data import load_split
    from training.model import train_tokenizer
    from training.workspace import tokenize

    test = load_split("test").head(12)
    assert "pair" in test.columns
    tok = train_tokenizer(test["text"], vocab_size=300, max_length=32)
    args = (tok, test["text"].tolist(), test["label"].tolist(), 32, "longest", tmp_path)
    ds, info = tokenize(*args, reuse_cache=True)
    assert ds.column_names == ["input_ids", "attention_mask", "labels"] and info["cache_hit"] is False
    assert tokenize(*args, reuse_cache=True)[1]["cache_hit"] is True
    ds2, info2 = tokenize(*args, reuse_cache=False)
    assert info2["cache_hit"] is False and ds2["input_ids"] == ds["input_ids"]


@pytest.mark.slow
def test_v9_evaluates_through_onnxruntime(run_tiny):
    res, paths = run_tiny("v9")
    _check_result(res, paths)
    ev = res["evaluation"]
    assert ev["engine"] == "onnxruntime" and ev["onnx_bytes"] > 0 and ev["export_energy"]["source"]
    assert res["energy_kwh"]["export"] == pytest.approx(ev["export_energy"]["gross_kwh"])
    assert res["duration_s"]["export"] == ev["export_s"] and res["energy_source"]["export"]
    assert res["mcc"] is not None and res["roc_auc"] is not None  # scored from ONNX Runtime's logits


@pytest.mark.slow
def test_v11_torch_compile_runs_on_cpu(run_tiny):
    res, paths = run_tiny("v11")
    _check_result(res, paths)
    assert res["config"]["training"]["torch_compile"] is True


@pytest.mark.parametrize("variant", ["v0", "v2+v13"])
def test_a_saved_checkpoint_loads_as_the_real_model_path(run_tiny, tiny_model_dir, variant):
    """``MODEL=<dir>``: the from_pretrained path (its own tokenizer, data.max_length, the real
    learning rate), with LoRA and pruning on a loaded model."""
    res, paths = run_tiny(variant, [f"model.name={tiny_model_dir}", "data.max_length=64"])
    assert res["status"] == "ok", res.get("failure_reason")
    assert res["model"]["name"] == str(tiny_model_dir)
    assert res["training"]["learning_rate"] == 5e-5
    assert res["data"]["train_tokenization"]["max_length"] == 64
    if "v13" in variant:
        assert res["model"]["pruning"]["layers_after"] == res["model"]["pruning"]["layers_before"] - 1


def test_missing_real_model_fails_clearly(run_tiny, tmp_path):
    res, _ = run_tiny("v0", [f"model.name={tmp_path / 'no-such-model'}"])
    assert res["status"] == "failed" and "not available offline" in res["failure_reason"]


def test_failed_run_keeps_the_energy_of_the_stages_it_went_through(run_tiny, tmp_path):
    res, paths = run_tiny("v0", [f"model.name={tmp_path / 'no-such-model'}"])
    assert res["status"] == "failed"
    on_disk = json.loads(paths.result.read_text())
    rec = on_disk["energy"]["data"]  # the stage that raised is still measured, and flagged
    assert rec["gross_j"] is not None and any("raised" in f for f in rec["flags"])
    assert on_disk["energy_kwh"]["data"] is not None and on_disk["duration_s"]["data"] >= 0
