"""The onnxruntime and pytorch engines as real server processes on loopback ports, driven by
the official ``tritonclient.http`` and by raw JSON (httpx)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from serving import protocol
from tests.conftest import REPO_ROOT

MODEL = "bigvul-modernbert"
INFER = f"/v2/models/{MODEL}/infer"


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample from the server's Prometheus text (0 when absent)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    m = re.search(pattern, text, flags=re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def servers(serve_process, serving_root):
    """Both engines, same settings (a 20 ms batching window so concurrency shows batches; no
    admission deadline: 16 clients of up to 3 rows may queue past one batch, and these tests
    are about batching and the protocol — test_admission.py has the deadline)."""
    common = ("--max-queue-delay-ms", "20", "--max-batch-size", "16", "--max-length", "128",
              "--max-queue-wait-ms", "0")
    procs = {e: serve_process(e, serving_root, *common, wait=False) for e in ("onnxruntime", "pytorch")}
    return {e: sp.wait_ready().url for e, sp in procs.items()}


@pytest.fixture(scope="module")
def texts(test_split) -> list[str]:
    return list(test_split["text"].iloc[:8])


def _triton_infer(url: str, texts: list[str], binary: bool):
    import tritonclient.http as th

    client = th.InferenceServerClient(url.removeprefix("http://"))
    try:
        inp = th.InferInput("TEXT", [len(texts), 1], "BYTES")
        inp.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object),
                                binary_data=binary)
        outs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("LOGITS", "LABEL")]
        res = client.infer(MODEL, [inp], outputs=outs)
        return res.as_numpy("LOGITS"), res.as_numpy("LABEL")
    finally:
        client.close()


def test_tritonclient_and_raw_json_agree_across_engines(servers, texts):
    import tritonclient.http as th

    results = {}
    for engine, url in servers.items():
        client = th.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert meta["parameters"]["variant"] == "v0"
        assert meta["parameters"]["format"] == {"onnxruntime": "onnx", "pytorch": "pytorch"}[engine]
        assert client.get_model_repository_index() == [
            {"name": MODEL, "version": "1", "state": "READY"}
        ]
        client.close()

        logits_bin, labels_bin = _triton_infer(url, texts, binary=True)
        logits_json, labels_json = _triton_infer(url, texts, binary=False)
        body = {"inputs": [{"name": "TEXT", "shape": [len(texts), 1], "datatype": "BYTES",
                            "data": texts}]}
        r = httpx.post(url + INFER, json=body, timeout=30)
        assert r.status_code == 200, r.text
        raw = protocol.parse_infer_response(r.content)
        assert logits_bin.shape == (len(texts), 2) and logits_bin.dtype == np.float32
        assert labels_bin.shape == (len(texts),) and labels_bin.dtype == np.int64
        np.testing.assert_array_equal(labels_bin, labels_json)
        np.testing.assert_array_equal(labels_bin, raw["LABEL"])
        np.testing.assert_allclose(logits_bin, raw["LOGITS"], atol=1e-6)
        np.testing.assert_allclose(logits_bin, logits_json, atol=1e-6)
        results[engine] = (logits_bin, labels_bin)

    np.testing.assert_array_equal(results["onnxruntime"][1], results["pytorch"][1])
    np.testing.assert_allclose(results["onnxruntime"][0], results["pytorch"][0], atol=1e-4)


def test_server_matches_in_process_runner(servers, texts, serving_root):
    from serving.runners import make_runner

    runner = make_runner("onnxruntime", serving_root / "v0" / "onnx", threads=1, max_length=128)
    expected_logits, expected_labels = runner.predict(texts)
    logits, labels = _triton_infer(servers["onnxruntime"], texts, binary=True)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-5)


def test_dynamic_batching_and_request_counting(servers, test_split):
    rows = list(test_split["text"].iloc[:48])
    for url in servers.values():
        before_requests = metric(url, "inference_requests_total")
        before_batches = metric(url, "inference_batch_size_count")
        before_single = metric(url, "inference_batch_size_bucket", 'le="1.0"')

        def one(text: str, url: str = url) -> int:
            body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}
            return httpx.post(url + INFER, json=body, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:  # 16 concurrent clients
            codes = list(pool.map(one, rows))
        assert codes == [200] * len(rows)
        assert metric(url, "inference_requests_total") - before_requests == len(rows)
        batches = metric(url, "inference_batch_size_count") - before_batches
        single = metric(url, "inference_batch_size_bucket", 'le="1.0"') - before_single
        assert batches - single > 0, "no batch larger than 1 under 16 concurrent clients"
        assert batches < len(rows)


def test_multi_row_requests_are_split_back_correctly(servers, test_split, serving_root):
    """Concurrent requests of 1–3 rows share batches; each gets exactly its own rows back."""
    from serving.runners import make_runner

    runner = make_runner("onnxruntime", serving_root / "v0" / "onnx", threads=1, max_length=128)
    texts = list(test_split["text"].iloc[:40])
    chunks, i = [], 0
    while i < len(texts):
        k = 1 + len(chunks) % 3
        chunks.append(texts[i : i + k])
        i += k
    expected = [runner.predict(c) for c in chunks]
    url = servers["onnxruntime"]

    def send(chunk: list[str]) -> dict[str, np.ndarray]:
        body, headers = protocol.make_request(chunk, binary=True,
                                              outputs={"LOGITS": True, "LABEL": False})
        r = httpx.post(url + INFER, content=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        return protocol.parse_infer_response(r.content, r.headers.get(protocol.HEADER_LENGTH))

    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(send, chunks))
    for (logits, labels), out in zip(expected, got, strict=True):
        np.testing.assert_array_equal(out["LABEL"], labels)
        # Padding to a different batch-longest row moves logits by float noise only.
        np.testing.assert_allclose(out["LOGITS"], logits, atol=1e-4)


def test_gzip_request_body(servers, texts):
    import gzip

    body, headers = protocol.make_request(texts[:2])
    r = httpx.post(servers["pytorch"] + INFER, content=gzip.compress(body),
                   headers={**headers, "Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 200, r.text
    assert protocol.parse_infer_response(r.content)["LABEL"].shape == (2,)


def test_truncated_gzip_body_is_a_400(servers, texts):
    import gzip

    body, headers = protocol.make_request(texts[:2])
    cut = gzip.compress(body)[:-12]  # drop the tail: zlib raises nothing on a cut stream
    r = httpx.post(servers["onnxruntime"] + INFER, content=cut,
                   headers={**headers, "Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 400, r.text
    assert "truncated body" in r.json()["error"]


BAD_REQUESTS = [
    ("malformed JSON", b"{\"inputs\": [", {}, 400, "malformed JSON"),
    ("wrong tensor name", b'{"inputs":[{"name":"CODE","shape":[1,1],"datatype":"BYTES","data":["x"]}]}',
     {}, 400, "unknown input tensor 'CODE'"),
    ("wrong shape", b'{"inputs":[{"name":"TEXT","shape":[1,3],"datatype":"BYTES","data":["x","y","z"]}]}',
     {}, 400, "expected [batch, 1]"),
    ("wrong datatype", b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"INT64","data":[1]}]}',
     {}, 400, "expected 'BYTES'"),
    ("empty batch", b'{"inputs":[{"name":"TEXT","shape":[0,1],"datatype":"BYTES","data":[]}]}',
     {}, 400, "empty batch"),
    ("non-UTF-8 JSON", b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES","data":["\xc3\x28"]}]}',
     {}, 400, "UTF-8"),
    ("too many rows", b'{"inputs":[{"name":"TEXT","shape":[17,1],"datatype":"BYTES","data":['
     + b'"x",' * 16 + b'"x"]}]}', {}, 400, "max_batch_size=16"),
    ("bad header length", b'{"inputs":[]}', {"Inference-Header-Content-Length": "999"}, 400,
     "outside the body"),
    ("unsupported encoding", b"{}", {"Content-Encoding": "br"}, 415, "not supported"),
]


@pytest.mark.parametrize("engine", ["onnxruntime", "pytorch"])
def test_bad_input_is_4xx_and_server_keeps_serving(servers, texts, engine):
    url = servers[engine]
    for what, body, headers, status, needle in BAD_REQUESTS:
        r = httpx.post(url + INFER, content=body, headers=headers, timeout=30)
        assert r.status_code == status, (what, r.text)
        assert needle in r.json()["error"], (what, r.json())
    # Binary tensor with non-UTF-8 bytes, as tritonclient would send it.
    blob = b"\x02\x00\x00\x00\xff\xfe"
    header = (b'{"inputs":[{"name":"TEXT","shape":[1,1],"datatype":"BYTES",'
              b'"parameters":{"binary_data_size":6}}]}')
    r = httpx.post(url + INFER, content=header + blob,
                   headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)
    assert r.status_code == 400 and "not valid UTF-8" in r.json()["error"]
    # 10 MB body → 413 (the default limit is 4 MiB).
    big = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["x" * 10_000_000]}]}
    r = httpx.post(url + INFER, json=big, timeout=60)
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]
    # Unknown model / version / route.
    r = httpx.post(url + "/v2/models/other/infer", json={}, timeout=30)
    assert r.status_code == 404 and "unknown model 'other'" in r.json()["error"]
    assert httpx.get(url + "/v2/models/other", timeout=30).status_code == 404
    assert httpx.get(url + f"/v2/models/{MODEL}/versions/7", timeout=30).status_code == 404
    assert httpx.get(url + "/v2/nothing", timeout=30).json()["error"].startswith("no route")
    # Still serving, with the same answer as before.
    assert _triton_infer(url, texts[:2], binary=True)[1].shape == (2,)
    assert metric(url, "inference_errors_total", 'code="400"') >= len(BAD_REQUESTS) - 1


def test_overload_answers_503_counted_and_recovers(serve_process, serving_root):
    # One row per batch, 800 ms each, at most 2 waiting: 12 simultaneous requests must overflow
    # (admission by deadline off: this is the queue-size bound; test_admission has the other).
    sp = serve_process("onnxruntime", serving_root, "--max-queue-size", "2", "--max-batch-size",
                       "1", "--batch-delay-ms", "800", "--max-queue-delay-ms", "0",
                       "--max-queue-wait-ms", "0")
    url = sp.url
    body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["int x;"]}]}
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: httpx.post(url + INFER, json=body, timeout=60), range(12)))
    codes = [r.status_code for r in responses]
    rejected = [r for r in responses if r.status_code == 503]
    assert set(codes) <= {200, 503} and rejected and 200 in codes, codes
    assert "queue full" in rejected[0].json()["error"]
    assert rejected[0].headers["retry-after"] == "1"
    assert metric(url, "inference_rejected_total") == len(rejected)
    assert metric(url, "inference_requests_total") == 12
    assert httpx.post(url + INFER, json=body, timeout=60).status_code == 200

    # Graceful shutdown: a request in flight when SIGTERM arrives is still answered.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(httpx.post, url + INFER, json=body, timeout=60)
        deadline = time.monotonic() + 30
        while metric(url, "inference_requests_total") < 14 and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until the server has admitted it (the batch takes 800 ms)
        rc = sp.stop()
        assert pending.result().status_code == 200
    assert rc == 0, sp.log()


def test_cli_unavailable_engine_prints_one_line(serving_root):
    for args in (["--engine", "onnxruntime", "--provider", "CUDAExecutionProvider"],
                 ["--engine", "vllm"]):
        proc = subprocess.run(
            [sys.executable, "-m", "serving.serve", *args, "--artifacts-dir", str(serving_root),
             "--no-build"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode != 0
        err = proc.stderr.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    with socket.socket() as busy:  # a port someone else holds: refused before any model load
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "serving.serve", "--port", str(busy.getsockname()[1]),
             "--artifacts-dir", str(serving_root), "--no-build"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 1 and "already in use" in proc.stderr, proc.stderr
    with socket.socket() as busy:  # Triton's gRPC port (HTTP port + 1) taken: refused too
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "serving.serve", "--engine", "triton",
             "--port", str(busy.getsockname()[1] - 1), "--artifacts-dir", str(serving_root), "--no-build"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 1 and "already in use" in proc.stderr, proc.stderr
    assert "CUDAExecutionProvider" in subprocess.run(
        [sys.executable, "-m", "serving.serve", "--help"], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout
