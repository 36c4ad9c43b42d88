"""The triton engine: a real Triton server (PyTriton's bundled tritonserver) started by
``python -m serving.serve --engine triton`` on free loopback ports, driven with
``tritonclient.http`` and raw JSON, compared with the in-process ONNX Runtime runner."""

from __future__ import annotations

import concurrent.futures as cf

import httpx
import numpy as np
import pytest

from serving.engines.triton import parse_metrics
from tests.conftest import free_port

MODEL = "bigvul-modernbert"


@pytest.fixture(scope="module")
def triton_server(serve_process, serving_root):
    mp = pytest.MonkeyPatch()
    grpc, metrics = free_port(), free_port()
    # The child reads these (see serving.engines.triton: gRPC/metrics ports).
    mp.setenv("TRITON_GRPC_PORT", str(grpc))
    mp.setenv("TRITON_METRICS_PORT", str(metrics))
    try:
        sp = serve_process("triton", serving_root, "--max-queue-delay-ms", "20", "--max-batch-size", "16")
    finally:
        mp.undo()
    sp.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    return sp


def _infer(url: str, texts: list[str]):
    import tritonclient.http as th

    client = th.InferenceServerClient(url.removeprefix("http://"))
    inp = th.InferInput("TEXT", [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    res = client.infer(MODEL, [inp])
    return res.as_numpy("LOGITS"), res.as_numpy("LABEL")


def test_tritonclient_matches_in_process_runner(triton_server, serving_root, test_split):
    from serving.runners import OnnxRunner

    texts = [str(t) for t in test_split["text"].iloc[:8]] + ["int x;"]
    logits, labels = _infer(triton_server.url, texts)
    want_logits, want_labels = OnnxRunner(serving_root / "v0" / "onnx", intra_op_threads=1).predict(texts)
    assert logits.dtype == np.float32 and logits.shape == (len(texts), 2)
    assert labels.dtype == np.int64 and labels.shape == (len(texts),)  # INT64 [batch], as every engine
    assert (labels == want_labels).all()
    assert np.abs(logits - want_logits).max() < 1e-4


def test_raw_json_protocol_and_repository_index(triton_server):
    body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [2, 1],
                        "data": ["int main(void) { return 0; }", "void f(char *p) { strcpy(p, q); }"]}]}
    r = httpx.post(f"{triton_server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["LOGITS"]["datatype"] == "FP32" and outs["LOGITS"]["shape"] == [2, 2]
    assert outs["LABEL"]["datatype"] == "INT64" and outs["LABEL"]["shape"] == [2]
    assert httpx.get(f"{triton_server.url}/v2/health/live").status_code == 200
    meta = httpx.get(f"{triton_server.url}/v2/models/{MODEL}").json()
    assert meta["inputs"][0]["name"] == "TEXT" and meta["inputs"][0]["datatype"] == "BYTES"
    index = httpx.post(f"{triton_server.url}/v2/repository/index").json()
    assert any(m["name"] == MODEL and m.get("state") == "READY" for m in index)


def test_bad_input_is_4xx_and_server_keeps_serving(triton_server):
    bad = [
        {"inputs": [{"name": "WRONG", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]},
        {"inputs": [{"name": "TEXT", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]},
    ]
    for body in bad:
        r = httpx.post(f"{triton_server.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.json().get("error")
    # Non-UTF-8 bytes in a binary tensor: the callable rejects the row, naming it.
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    client = th.InferenceServerClient(triton_server.url.removeprefix("http://"))
    inp = th.InferInput("TEXT", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[b"\xff\xfe\xfa"]], dtype=object))
    with pytest.raises(InferenceServerException, match="not valid UTF-8"):
        client.infer(MODEL, [inp])
    assert _infer(triton_server.url, ["int y;"])[1].shape == (1,)


def test_unparseable_json_is_500_upstream_and_server_keeps_serving(triton_server):
    """Triton's own HTTP front end answers a body that is not JSON with 500, not 400 — before
    the model sees it, so nothing here can change it (docs/serving.md). Pinned so that an
    upstream fix shows up."""
    r = httpx.post(f"{triton_server.url}/v2/models/{MODEL}/infer", content=b"{not json",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 500, (r.status_code, r.text)
    assert "json" in r.text.lower(), r.text
    assert _infer(triton_server.url, ["int y;"])[1].shape == (1,)


def test_dynamic_batching_visible_in_triton_metrics(triton_server, test_split):
    before = parse_metrics(httpx.get(triton_server.metrics_url, timeout=5).text, MODEL)
    texts = [str(t) for t in test_split["text"].iloc[:48]]
    with cf.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda t: _infer(triton_server.url, [t]), texts))
    assert all(lb.shape == (1,) for _, lb in results)
    after = parse_metrics(httpx.get(triton_server.metrics_url, timeout=5).text, MODEL)
    assert after["requests_success"] - before["requests_success"] == len(texts)
    rows = after["inference_count"] - before["inference_count"]
    batches = after["exec_count"] - before["exec_count"]
    assert rows == len(texts)
    assert batches < rows  # 16 concurrent clients: Triton's batcher grouped some requests


def test_parse_metrics_on_known_text():
    text = "\n".join([
        "# HELP nv_inference_request_success Number of successful inference requests",
        "# TYPE nv_inference_request_success counter",
        'nv_inference_request_success{model="bigvul-modernbert",version="1"} 40',
        'nv_inference_request_failure{model="bigvul-modernbert",reason="REJECTED",version="1"} 3',
        'nv_inference_request_failure{model="bigvul-modernbert",reason="BACKEND",version="1"} 1',
        'nv_inference_count{model="bigvul-modernbert",version="1"} 64',
        'nv_inference_exec_count{model="bigvul-modernbert",version="1"} 16',
        'nv_inference_count{model="other",version="1"} 1000',
        'nv_inference_queue_duration_us{model="bigvul-modernbert",version="1"} 1500',
    ])
    m = parse_metrics(text)
    assert m["requests_success"] == 40 and m["requests_failed"] == 4 and m["requests_rejected"] == 3
    assert m["inference_count"] == 64 and m["exec_count"] == 16 and m["mean_batch_size"] == 4.0
    assert m["queue_us"] == 1500.0
    assert parse_metrics("")["mean_batch_size"] is None


def test_sigterm_stops_cleanly(triton_server):
    rc = triton_server.stop()
    assert rc == 0, triton_server.log_path.read_text()[-3000:]
