"""Load models, protocol checks and metrics parsing on known inputs (no processes)."""

from __future__ import annotations

import json

import pytest

from loadtest.protocols import (
    MAX_RETRY_AFTER_S,
    oip_labels,
    oip_request,
    retry_after_s,
    vllm_labels,
    vllm_request,
)
from loadtest.run import RunConfig
from loadtest.shapes import LoadSpec, default_pool, parse_sweep, specs_for
from study.prometheus import parse_prometheus_sum


def test_load_specs_closed_open_and_sweep():
    closed = LoadSpec(users=8)
    assert closed.model == "closed" and closed.n_users == 8 and closed.label == "users8"
    assert closed.locust_args()[:2] == ["-u", "8"]
    assert "LOADTEST_RPS" not in closed.env()
    open_ = LoadSpec(rps=25.0)
    assert open_.model == "open" and open_.n_users == default_pool(25.0) == 50
    assert open_.env()["LOADTEST_POOL"] == "50" and float(open_.env()["LOADTEST_RPS"]) == 25.0
    assert parse_sweep("1, 4,16,64") == [1, 4, 16, 64]
    assert [s.users for s in specs_for(sweep="1,4")] == [1, 4]
    assert [s.rps for s in specs_for(rps=5.0, sweep="5,10")] == [5.0, 10.0]
    assert specs_for()[0].users == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of users"),
        ({"users": 2, "rps": 3.0}, "exactly one of users"),
        ({"users": 0}, "users=0 is invalid"),
        ({"rps": -1.0}, "rps=-1.0 is invalid"),
        ({"users": 2, "pool": 4}, "pool=4 is only valid with rps"),
        ({"users": 2, "batch": 0}, "batch=0 is invalid"),
    ],
)
def test_load_spec_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoadSpec(**kwargs)


def test_sweep_and_config_errors_name_the_key():
    with pytest.raises(ValueError, match="users must be integers"):
        parse_sweep("1,2.5")
    with pytest.raises(ValueError, match="not a number"):
        parse_sweep("1,x")
    with pytest.raises(ValueError, match="engine='tgi' is invalid; allowed: onnxruntime"):
        RunConfig(engine="tgi")
    with pytest.raises(ValueError, match="duration_s=0 is invalid"):
        RunConfig(engine="pytorch", duration_s=0)
    with pytest.raises(ValueError, match="unknown country code 'XYZ'"):
        RunConfig(engine="pytorch", country="XYZ")  # refused before any work, not a null CO₂
    assert RunConfig(engine="onnxruntime").format == "onnx"
    assert RunConfig(engine="vllm").protocol == "vllm"


def test_results_dir_is_the_results_root_and_an_old_load_folder_is_taken_explicitly(tmp_path, monkeypatch, capsys):
    from argparse import Namespace

    from loadtest import live

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "env-root"))
    monkeypatch.setenv("ARTIFACTS", str(tmp_path / "art"))
    cfg = RunConfig(engine="pytorch")  # no option: $RESULTS_DIR and $ARTIFACTS
    assert cfg.paths.load_run("pytorch", "v0", "r1") == tmp_path / "env-root" / "load" / "pytorch__v0" / "r1"
    assert cfg.paths.model_dir("v0") == tmp_path / "art" / "v0" / "model"
    cfg = RunConfig(engine="pytorch", results_dir=str(tmp_path / "root"))
    assert cfg.paths.load_run("pytorch", "v0", "r1") == tmp_path / "root" / "load" / "pytorch__v0" / "r1"
    assert capsys.readouterr().err == ""
    # The option's old meaning (the load folder itself) is never nested into load/load: it is
    # taken as <root>/load, and stderr says so.
    cfg = RunConfig(engine="pytorch", results_dir=str(tmp_path / "old" / "load"))
    assert cfg.results_dir == str(tmp_path / "old")
    assert cfg.paths.load_run("pytorch", "v0", "r1") == tmp_path / "old" / "load" / "pytorch__v0" / "r1"
    err = capsys.readouterr().err
    assert "is the load folder of the results root" in err and str(tmp_path / "old" / "load") in err
    # A results root that happens to be called "load" (it has its own load/ below it) stays one.
    (tmp_path / "load" / "load").mkdir(parents=True)
    assert RunConfig(engine="pytorch", results_dir=str(tmp_path / "load")).results_dir == str(tmp_path / "load")
    # Plain Locust's --results-dir is the same root: its runs go to <root>/locust/…, its sidecar's
    # power CSVs to <root>/power/.
    s = live.settings_from(Namespace(**{**{o.dest: o.default for o in live.OPTIONS}, "results_dir": str(tmp_path / "r")}))
    assert live.paths(s).locust_run("pytorch", "v0", "x") == tmp_path / "r" / "locust" / "pytorch__v0" / "x"
    assert live.paths(s).power == tmp_path / "r" / "power"


def test_oip_request_and_response_checks():
    path, body = oip_request(["int f(){}", "void g(){}"], "bigvul-modernbert")
    assert path == "/v2/models/bigvul-modernbert/infer"
    inp = json.loads(body)["inputs"][0]
    assert inp["shape"] == [2, 1] and inp["datatype"] == "BYTES" and inp["name"] == "TEXT"
    good = {"outputs": [
        {"name": "LOGITS", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.2, 0.3, -0.1]},
        {"name": "LABEL", "shape": [2], "datatype": "INT64", "data": [1, 0]},
    ]}
    assert oip_labels(good, 2) == [1, 0]
    with pytest.raises(ValueError, match="schema: no LABEL"):
        oip_labels({"outputs": []}, 1)
    with pytest.raises(ValueError, match="expected 3"):
        oip_labels(good, 3)
    with pytest.raises(ValueError, match="schema: no 'outputs'"):
        oip_labels({"error": "x"}, 1)
    bad = {"outputs": [{"name": "LABEL", "data": [7]}]}
    with pytest.raises(ValueError, match="outside"):
        oip_labels(bad, 1)


def test_vllm_classify_request_and_response():
    path, body = vllm_request(["a", "b"], "m")
    assert path.endswith("classify") and json.loads(body)["input"] == ["a", "b"]
    resp = {"data": [{"index": 1, "probs": [0.9, 0.1]}, {"index": 0, "probs": [0.2, 0.8]}]}
    assert vllm_labels(resp, 2) == [1, 0]
    with pytest.raises(ValueError, match="schema"):
        vllm_labels({"data": []}, 1)
    with pytest.raises(ValueError, match="schema: .*2 rows for 3 inputs"):
        vllm_labels(resp, 3)


def test_prometheus_counter_sum():
    text = "\n".join([
        "# HELP inference_requests_total Inference requests",
        "# TYPE inference_requests_total counter",
        "inference_requests_total 812.0",
        "inference_requests_created 1.7e9",
        'nv_inference_request_success{model="bigvul-modernbert",version="1"} 800',
        'nv_inference_request_failure{model="bigvul-modernbert",version="1"} 12',
    ])
    assert parse_prometheus_sum(text, ("inference_requests_total",)) == 812.0
    assert parse_prometheus_sum(text, ("nv_inference_request_success", "nv_inference_request_failure")) == 812.0
    assert parse_prometheus_sum(text, ("absent",)) is None
    # A Triton ensemble counts each request once per composing model too: only the served one.
    ensemble = "\n".join([
        'nv_inference_request_success{model="bigvul-modernbert",version="1"} 10',
        'nv_inference_request_success{model="tokenizer",version="1"} 10',
        'nv_inference_request_success{model="model_onnx",version="1"} 10',
        "inference_requests_total 7 1700000000000",  # a sample with a timestamp
    ])
    names = ("nv_inference_request_success", "nv_inference_request_failure")
    assert parse_prometheus_sum(ensemble, names, "bigvul-modernbert") == 10.0
    assert parse_prometheus_sum(ensemble, ("inference_requests_total",), "bigvul-modernbert") == 7.0


def test_bench_ratios_and_table():
    from loadtest.bench import format_table, ratios

    rows = [
        {"engine": "onnxruntime", "status": "ok", "wh_per_1k_gross": 0.5, "wh_per_1k_net": 0.2,
         "throughput_rps": 60.0, "p99_ms": 20.0, "energy_kind": "estimated"},
        {"engine": "pytorch", "status": "ok", "wh_per_1k_gross": 1.0, "wh_per_1k_net": 0.4,
         "throughput_rps": 30.0, "p99_ms": 40.0, "energy_kind": "estimated"},
        {"engine": "triton", "status": "failed", "failure_reason": "engine unavailable",
         "wh_per_1k_gross": None, "wh_per_1k_net": None, "throughput_rps": None, "p99_ms": None,
         "energy_kind": None},
    ]
    table = ratios(rows, "pytorch")
    assert table[0]["energy_ratio_gross"] == 0.5 and table[0]["throughput_ratio"] == 2.0
    assert table[0]["energy_ratio_net"] == 0.5 and table[0]["p99_ratio"] == 0.5
    assert table[1]["energy_ratio_gross"] == 1.0
    assert table[2]["energy_ratio_gross"] is None
    text = format_table(table, "pytorch")
    assert "(estimated)" in text and "ratios vs pytorch" in text
    assert "failed: engine unavailable" in text
    assert all(r["energy_ratio_gross"] is None for r in ratios(rows[:1], "pytorch"))  # no baseline


@pytest.mark.parametrize("value, seconds", [
    (None, 0.0), ("", 0.0), ("1", 1.0), ("2.5", 2.5), ("0", 0.0), ("-3", 0.0), ("nan", 0.0),
    ("inf", MAX_RETRY_AFTER_S), ("100", MAX_RETRY_AFTER_S),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", 0.0),
])
def test_retry_after_is_delta_seconds_capped_and_junk_is_zero(value, seconds):
    assert retry_after_s(value) == seconds
