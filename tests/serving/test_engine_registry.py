"""The engine registry (serving/engines/registry.py) is the one home of each engine's facts: the
engines, the load test and the containers' Make targets read it, and its CLI prints it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.engines import ENGINES, get_engine
from serving.engines.registry import ENGINE_NAMES, FACTS, facts
from tests.conftest import REPO_ROOT


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serving.engines", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["onnxruntime", "pytorch", "triton", "vllm"])
def test_each_engine_takes_its_facts_from_the_registry(name):
    engine = get_engine(name)
    f = FACTS[name]
    assert (engine.default_format, tuple(engine.formats), engine.health_path) == (
        f.default_format, f.formats, f.health_path)
    assert ENGINES[name] == f.module


def test_ports_follow_each_engines_layout_and_triton_honours_its_port_variables():
    assert facts("onnxruntime").ports(9000) == {"http": 9000, "metrics": 9000}
    assert facts("triton").ports(9000) == {"http": 9000, "grpc": 9001, "metrics": 9002}
    assert facts("triton").consecutive_ports() == 3 and facts("vllm").consecutive_ports() == 1
    env = {"TRITON_METRICS_PORT": "7777"}
    assert facts("triton").metrics_url("127.0.0.1", 9000, env) == "http://127.0.0.1:7777/metrics"
    assert facts("triton").metrics_url("127.0.0.1", 9000) == "http://127.0.0.1:9002/metrics"
    assert facts("vllm").health_url("127.0.0.1", 9000) == "http://127.0.0.1:9000/health"
    with pytest.raises(ValueError, match="unknown engine 'tgi'; allowed: onnxruntime, pytorch, triton, vllm"):
        facts("tgi")


def test_describe_prints_json_a_field_or_shell_lines():
    proc = _cli("describe", "triton", "--port", "9100")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["default_format"] == "onnx" and info["protocol"] == "oip"
    assert info["ports"] == {"http": 9100, "grpc": 9101, "metrics": 9102}
    assert info["metrics_url"] == "http://127.0.0.1:9102/metrics"
    assert info["request_counters"] == ["nv_inference_request_success", "nv_inference_request_failure"]
    assert _cli("describe", "vllm", "--field", "default_format").stdout == "pytorch\n"
    assert _cli("describe", "vllm", "--field", "metrics_port").stdout == "8000\n"
    shell = _cli("describe", "vllm", "--shell").stdout.splitlines()
    assert "PROTOCOL=vllm" in shell and "HEALTH_PATH=/health" in shell
    assert _cli("list").stdout.split() == list(ENGINE_NAMES)


def test_describe_refuses_an_unknown_engine_naming_the_allowed_ones():
    proc = _cli("describe", "tgi")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown engine 'tgi'; allowed: onnxruntime, pytorch, triton, vllm" in proc.stderr
    bad_field = _cli("describe", "vllm", "--field", "colour")
    assert bad_field.returncode == 2 and "default_format" in bad_field.stderr
    assert "describe" in _cli("--help").stdout and "--field" in _cli("describe", "--help").stdout


def test_the_load_test_asks_the_registry(tmp_path, monkeypatch):
    from loadtest.config import DEFAULT_FORMAT, SERVER_COUNTERS, RunConfig
    from loadtest.config import ENGINES as LOAD_ENGINES
    from loadtest.launch import Server

    assert LOAD_ENGINES == ENGINE_NAMES
    assert DEFAULT_FORMAT == {n: f.default_format for n, f in FACTS.items()}
    assert all(SERVER_COUNTERS[n] == f.request_counters for n, f in FACTS.items())
    assert RunConfig(engine="vllm").protocol == "vllm" and RunConfig(engine="triton").protocol == "oip"
    monkeypatch.delenv("TRITON_METRICS_PORT", raising=False)
    triton = Server(RunConfig(engine="triton"), tmp_path)
    assert triton.metrics_url == f"http://127.0.0.1:{triton.port + 2}/metrics"
    assert triton.health_url == f"http://127.0.0.1:{triton.port}/v2/health/ready"
    vllm = Server(RunConfig(engine="vllm"), tmp_path)
    assert (vllm.metrics_url, vllm.health_url) == (f"{vllm.url}/metrics", f"{vllm.url}/health")
