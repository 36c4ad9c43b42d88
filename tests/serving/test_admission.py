"""Admission by deadline: the rule as a pure function on known numbers, and one overloaded real
server that sheds with 503 + Retry-After before reading bodies and keeps serving."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving.admission import ALWAYS_ADMIT_ROWS
from serving.batcher import Batcher
from serving.server import admit
from serving.server_metrics import Metrics

MODEL = "bigvul-modernbert"
INFER = f"/v2/models/{MODEL}/infer"


def _admit(**kw):
    args = dict(queued_rows=0, running_left_s=0.0, batch_s=0.1, batch_rows=10.0,
                batch_cap=16, max_wait_s=0.1, rows=1)
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


def test_a_short_queue_is_never_shed_however_slow_the_rows():
    # 1 s per row, a 100 ms bound, batches of 1: a few concurrent clients still get in.
    slow = dict(running_left_s=1.0, batch_s=1.0, batch_rows=1.0, batch_cap=1)
    assert _admit(queued_rows=ALWAYS_ADMIT_ROWS - 1, **slow).admit
    assert not _admit(queued_rows=ALWAYS_ADMIT_ROWS, **slow).admit


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


class _PerRowRunner:
    """A runner that takes ``per_row_s`` per row (sleeps; no model)."""

    def __init__(self, per_row_s: float) -> None:
        self.per_row_s, self.batches = per_row_s, []

    def predict(self, texts):
        import time

        import numpy as np

        self.batches.append(len(texts))
        time.sleep(self.per_row_s * len(texts))
        return np.zeros((len(texts), 2), dtype=np.float32), np.zeros(len(texts), dtype=np.int64)

    def describe(self):
        return {}


def _batcher(runner=None, max_batch_size=32, max_queue_wait_ms=30.0, **state):
    b = Batcher(runner or _PerRowRunner(0.0), Metrics({"model": "m"}), max_batch_size, 0.0,
                256, max_queue_wait_ms)
    for k, v in state.items():
        setattr(b, k, v)
    return b


def test_batch_cap_holds_the_rows_that_run_in_half_the_bound():
    # 3 ms per row (30 ms per 10-row batch), 30 ms bound: 15 ms of rows = 5.
    assert _batcher(batch_s=0.030, batch_rows=10.0).batch_cap() == 5
    # Cheap rows (a GPU, a small model): max_batch_size.
    assert _batcher(batch_s=0.001, batch_rows=10.0).batch_cap() == 32
    # A row slower than the bound: batches of 1, never 0.
    assert _batcher(batch_s=0.25, batch_rows=1.0).batch_cap() == 1
    # No bound, or nothing measured yet: max_batch_size.
    assert _batcher(max_queue_wait_ms=0, batch_s=0.25, batch_rows=1.0).batch_cap() == 32
    assert _batcher(batch_s=0.0).batch_cap() == 32


def test_flooded_batcher_keeps_batches_within_the_bound():
    """48 requests at once, 10 ms per row, a 100 ms bound: after the first batch (no history
    yet: up to max_batch_size) every batch holds at most the 5 rows that run in 50 ms."""
    import asyncio

    runner = _PerRowRunner(0.010)

    async def flood():
        b = _batcher(runner, max_queue_wait_ms=100.0)
        b.start()
        try:
            await asyncio.gather(*(b.submit([f"int f{i};"]) for i in range(48)))
        finally:
            await b.stop()

    asyncio.run(flood())
    assert sum(runner.batches) == 48
    # Scheduling delays only make a row look slower, so the cap can only be smaller.
    assert max(runner.batches[1:]) <= 5, runner.batches
