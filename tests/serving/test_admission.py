"""Admission by deadline: the rule as a pure function on known numbers, and one overloaded real
server that sheds with 503 + Retry-After before reading bodies and keeps serving."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.server import admit

MODEL = "bigvul-modernbert"
INFER = f"/v2/models/{MODEL}/infer"


def _admit(**kw):
    args = dict(queued_rows=0, running_left_s=0.0, batch_s=0.1, batch_rows=10.0,
                max_batch_size=16, max_wait_s=0.1, rows=1)
    return admit(**{**args, **kw})


def test_idle_server_admits_with_zero_wait():
    d = _admit()
    assert d.admit and d.expected_wait_s == 0.0 and d.retry_after_s == 1


def test_expected_wait_is_running_rest_plus_rows_times_batch_time_over_batch_rows():
    # 40 rows ahead at 100 ms per 10-row batch = 400 ms, + 50 ms left of the running batch.
    d = _admit(queued_rows=40, running_left_s=0.05)
    assert d.expected_wait_s == pytest.approx(0.45)
    assert not d.admit and d.retry_after_s == 1
    assert _admit(queued_rows=40, max_wait_s=0.5).admit  # 400 ms fits a 500 ms bound
    slow = _admit(queued_rows=40, batch_s=1.0, batch_rows=2.0)  # 20 s of work ahead
    assert not slow.admit and slow.retry_after_s == 20


def test_a_request_that_fits_the_next_batch_is_always_admitted():
    # A model whose one batch takes longer than the bound still serves: the next batch has room.
    d = _admit(queued_rows=15, running_left_s=5.0, batch_s=5.0, batch_rows=16.0)
    assert d.admit and d.expected_wait_s > 5
    assert not _admit(queued_rows=15, running_left_s=5.0, rows=2).admit  # 17 rows: no room


def test_no_bound_and_no_history():
    assert _admit(queued_rows=10_000, max_wait_s=0).admit  # 0 = off
    assert _admit(queued_rows=10_000, batch_s=0.0).admit  # nothing measured yet: no evidence
    # A running batch that overran its estimate counts as nothing left, never negative.
    assert _admit(running_left_s=-3.0).expected_wait_s == 0.0
    assert _admit(batch_rows=0.0, queued_rows=20).expected_wait_s == pytest.approx(2.0)


def test_overloaded_server_sheds_with_retry_after_and_stays_alive(serve_process, serving_root):
    from tests.serving.test_http_servers import metric

    # 2 rows per batch, 300 ms each, 100 ms bound: of 24 simultaneous requests only those that
    # fit the next batch (or 100 ms of queue) are admitted; the queue size (256) is never hit.
    sp = serve_process("onnxruntime", serving_root, "--max-batch-size", "2", "--batch-delay-ms",
                       "300", "--max-queue-delay-ms", "0", "--max-queue-wait-ms", "100")
    meta = httpx.get(sp.url + f"/v2/models/{MODEL}", timeout=10).json()
    assert meta["parameters"]["max_queue_wait_ms"] == 100.0
    body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["int x;"]}]}
    with ThreadPoolExecutor(max_workers=24) as pool:
        responses = list(pool.map(lambda _: httpx.post(sp.url + INFER, json=body, timeout=60),
                                  range(24)))
    codes = [r.status_code for r in responses]
    shed = [r for r in responses if r.status_code == 503]
    assert set(codes) <= {200, 503} and shed and 200 in codes, codes
    assert "expected queue wait" in shed[0].json()["error"]
    assert all(int(r.headers["retry-after"]) >= 1 for r in shed)
    assert metric(sp.url, "inference_shed_total", 'reason="deadline"') == len(shed)
    assert metric(sp.url, "inference_shed_total", 'reason="queue_full"') == 0
    assert metric(sp.url, "inference_rejected_total") == len(shed)
    assert 0 < metric(sp.url, "inference_goodput_total") <= codes.count(200)
    assert metric(sp.url, "inference_expected_queue_wait_seconds") >= 0
    # Recovered: once the queue drains a request is admitted again.
    assert httpx.post(sp.url + INFER, json=body, timeout=60).status_code == 200
    assert sp.proc.poll() is None
