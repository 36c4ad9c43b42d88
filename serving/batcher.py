"""Adaptive dynamic batching for the shared server: one runner thread forms batches from a
bounded queue and runs them (see :class:`Batcher`).

A batch closes when it holds :meth:`Batcher.batch_cap` rows (``max_batch_size``, fewer under a
queue-wait bound) or its oldest request has waited ``max_queue_delay_ms``; while it runs, the
next one fills up, so batches grow with load and stay at 1 when idle. The batcher also keeps the
state admission by deadline reads (queued rows, reservations, moving averages of batch time and
rows: :meth:`Batcher.admission`).

Batches are formed *in the runner thread*, not on the event loop: when a batch ends the thread
takes the next one at once. With the loop forming them, the runner waited for the loop between
batches, and under a flood of requests (each parsed, admitted or shed on that loop) it sat idle
~10 % of the time (py-spy; docs/serving.md, "Overhead and overload"). The loop only queues
requests and hands results back to them (``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from serving.admission import Admission, Overloaded, admit
from serving.runners import Runner
from serving.server_metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    enqueued_s: float = field(default_factory=time.perf_counter)


class Batcher:
    """Adaptive dynamic batching over one runner, run by one thread (runners are not
    thread-safe, and the model parallelises inside a call)."""

    #: weight of the newest batch in the moving averages of batch time and rows
    EWMA_ALPHA = 0.2
    #: a batch may hold the rows that run in this fraction of ``max_queue_wait_ms``
    BATCH_SHARE_OF_BOUND = 0.5

    def __init__(
        self, runner: Runner, metrics: Metrics, max_batch_size: int, max_queue_delay_ms: float,
        max_queue_size: int, max_queue_wait_ms: float = 0.0, initial_batch_s: float = 0.0,
    ) -> None:
        self.runner = runner
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_queue_delay_ms / 1000.0
        self.max_queue_size = max_queue_size
        self.max_wait_s = max_queue_wait_ms / 1000.0
        # Admission state: rows queued (submitted, not yet in a batch), requests admitted but
        # not yet submitted (their body is being read/parsed; counted as one row each), and
        # moving averages of the executed batches (seeded by the warm-up batch).
        self.queued_rows = 0
        self.reserved = 0
        self.batch_s = float(initial_batch_s)
        self.batch_rows = 1.0
        self.running_since: float | None = None
        self.stopping = False
        # The queue, shared by the loop (appends) and the runner thread (takes): guarded by
        # ``_ready``, which also wakes the thread when a request arrives or the server stops.
        self._queue: collections.deque[_Pending] = collections.deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="runner", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop: the batch that is running finishes and is answered; requests still queued are
        answered 503.

        The lifespan calls this only after uvicorn has answered the in-flight requests, so in
        a graceful shutdown nothing is left to refuse.
        """
        with self._ready:
            self.stopping = True
            self._ready.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)  # off the event loop
        with self._ready:
            leftovers = list(self._queue)
            self._queue.clear()
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(Overloaded("server is shutting down", kind="stopping"))

    def batch_cap(self) -> int:
        """Rows the next batch may hold: ``max_batch_size``, and under a queue-wait bound no
        more than run in half of it at the recent time per row (at least 1).

        An admitted request waits at most the bound, then runs in a batch that takes about half
        of it, so its time in the server stays near 1.5 × ``max_queue_wait_ms`` however large
        ``max_batch_size`` is (with 32-row batches, each of ~100 ms on 2 shared cores, it was
        ~200 ms under overload); where rows are cheap (a small model, a GPU) batches still grow
        to ``max_batch_size``. Measured in docs/serving.md ("Overhead and overload")."""
        if self.max_wait_s <= 0 or self.batch_s <= 0:
            return self.max_batch_size
        per_row_s = self.batch_s / max(self.batch_rows, 1.0)
        rows = int(self.BATCH_SHARE_OF_BOUND * self.max_wait_s / per_row_s)
        return max(1, min(self.max_batch_size, rows))

    def admission(self, rows: int = 1) -> Admission:
        """Decide on a request not read yet (see :func:`admit`); an admitted one holds a
        reservation until :meth:`submit` or :meth:`release`."""
        now = time.perf_counter()
        since = self.running_since
        running_left = 0.0 if since is None else self.batch_s - (now - since)
        decision = admit(
            queued_rows=self.queued_rows + self.reserved, running_left_s=running_left,
            batch_s=self.batch_s, batch_rows=self.batch_rows, batch_cap=self.batch_cap(),
            max_wait_s=self.max_wait_s, rows=rows,
        )
        self.metrics.expected_wait.set(decision.expected_wait_s)
        if decision.admit:
            self.reserved += 1
        return decision

    def release(self) -> None:
        """Drop the reservation of an admitted request that will not be submitted."""
        self.reserved = max(0, self.reserved - 1)

    async def submit(self, texts: list[str], reserved: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Queue ``texts`` (one request) and wait for its rows' ``(logits, labels)``.

        ``reserved``: the request holds an admission reservation (:meth:`admission`), which this
        turns into its queued rows.
        """
        if reserved:
            self.release()
        pending = _Pending(texts, asyncio.get_running_loop().create_future())
        with self._ready:
            if self.stopping:
                raise Overloaded("server is shutting down", kind="stopping")
            if len(self._queue) >= self.max_queue_size:
                raise Overloaded(
                    f"server overloaded: queue full ({self.max_queue_size} requests waiting, "
                    f"max_queue_size={self.max_queue_size}); retry later"
                )
            self._queue.append(pending)
            self.queued_rows += len(texts)
            depth, rows = len(self._queue), self.queued_rows
            self._ready.notify()
        self.metrics.queue_depth.set(depth)
        self.metrics.queue_rows.set(rows)
        return await pending.future

    # ------------------------------------------------------------------ the runner thread

    def _take_batch(self) -> list[_Pending] | None:
        """Wait for a request, then gather a batch (``None``: stopping). Runner thread."""
        with self._ready:
            while not self._queue:
                if self.stopping:
                    return None
                self._ready.wait()
            if self.stopping:
                return None
            first = self._queue.popleft()
            batch, rows = [first], len(first.texts)
            cap = self.batch_cap()
            deadline = first.enqueued_s + self.max_delay_s
            while rows < cap and not self.stopping:
                if not self._queue:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                    continue
                if rows + len(self._queue[0].texts) > cap:
                    break  # does not fit: first in the next batch
                nxt = self._queue.popleft()
                batch.append(nxt)
                rows += len(nxt.texts)
            self.queued_rows -= rows
            depth, queued = len(self._queue), self.queued_rows
        self.metrics.batch_cap.set(cap)
        self.metrics.queue_depth.set(depth)
        self.metrics.queue_rows.set(queued)
        return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            # A client that went away (cancelled future) does not need its rows computed.
            batch = [p for p in batch if not p.future.done()]
            if not batch:
                continue
            texts = [t for p in batch for t in p.texts]
            start = time.perf_counter()
            on_time = []
            for p in batch:
                wait = start - p.enqueued_s
                self.metrics.queue_wait.observe(wait)
                on_time.append(self.max_wait_s <= 0 or wait <= self.max_wait_s)
            self.running_since = start
            try:
                logits, labels = self.runner.predict(texts)
            except Exception as e:  # the model failed: every request in the batch gets a 500
                log.exception("runner failed on a batch of %d rows", len(texts))
                error = RuntimeError(f"model failed: {type(e).__name__}: {e}")
                self._loop.call_soon_threadsafe(self._fail, batch, error)
                continue
            finally:
                self.running_since = None
            took = time.perf_counter() - start
            a = self.EWMA_ALPHA
            if self.batch_s <= 0:  # the first measurement (no warm-up given): both from it
                self.batch_s, self.batch_rows = took, float(len(texts))
            else:
                self.batch_s = (1 - a) * self.batch_s + a * took
                self.batch_rows = (1 - a) * self.batch_rows + a * len(texts)
            self.metrics.batch_duration.observe(took)
            self.metrics.batch_size.observe(len(texts))
            self.metrics.rows.inc(len(texts))
            self._loop.call_soon_threadsafe(self._deliver, batch, on_time, logits, labels)

    # ------------------------------------------------------------------ back on the loop

    def _deliver(self, batch: list[_Pending], on_time: list[bool], logits: np.ndarray,
                 labels: np.ndarray) -> None:
        offset = 0
        for p, good in zip(batch, on_time, strict=True):
            k = len(p.texts)
            if not p.future.done():
                p.future.set_result((logits[offset : offset + k], labels[offset : offset + k]))
                if good:
                    self.metrics.goodput.inc()
            offset += k

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)
