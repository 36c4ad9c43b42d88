"""Adaptive dynamic batching for the shared server: one task forms batches from a bounded queue
and runs the runner in one worker thread (see :class:`Batcher`).

A batch closes when it holds ``max_batch_size`` rows or its oldest request has waited
``max_queue_delay_ms``; while it runs, the next one fills up, so batches grow with load and stay
at 1 when idle. The batcher also keeps the state admission by deadline reads (queued rows,
reservations, moving averages of batch time and rows: :meth:`Batcher.admission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
    """Adaptive dynamic batching over one runner executed in one worker thread."""

    #: weight of the newest batch in the moving averages of batch time and rows
    EWMA_ALPHA = 0.2

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
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue_size)
        # One thread: runners are not thread-safe, and the model parallelises inside a call.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runner")
        self.task: asyncio.Task | None = None
        self.stopping = False
        self._carry: _Pending | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Stop now: requests still queued, or in a batch that is running, are answered 503.

        The lifespan calls this only after uvicorn has answered the in-flight requests, so in
        a graceful shutdown nothing is left to refuse.
        """
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        leftovers = [self._carry] if self._carry else []
        while not self.queue.empty():
            leftovers.append(self.queue.get_nowait())
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(Overloaded("server is shutting down", kind="stopping"))
        # Waits for a runner call still in progress, off the event loop.
        await asyncio.to_thread(self.executor.shutdown, True)

    #: a batch may hold the rows that run in this fraction of ``max_queue_wait_ms``
    BATCH_SHARE_OF_BOUND = 0.5

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
        running_left = 0.0 if self.running_since is None else self.batch_s - (now - self.running_since)
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
        if self.stopping:
            raise Overloaded("server is shutting down", kind="stopping")
        pending = _Pending(texts, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(pending)
        except asyncio.QueueFull:
            raise Overloaded(
                f"server overloaded: queue full ({self.max_queue_size} requests waiting, "
                f"max_queue_size={self.max_queue_size}); retry later"
            ) from None
        self.queued_rows += len(texts)
        self.metrics.queue_depth.set(self.queue.qsize())
        self.metrics.queue_rows.set(self.queued_rows)
        return await pending.future

    async def _next(self, timeout_s: float | None) -> _Pending | None:
        if self._carry is not None:
            p, self._carry = self._carry, None
            return p
        with contextlib.suppress(asyncio.QueueEmpty):
            return self.queue.get_nowait()
        if timeout_s is not None and timeout_s <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            batch, rows = [first], len(first.texts)
            deadline = first.enqueued_s + self.max_delay_s
            cap = self.batch_cap()
            self.metrics.batch_cap.set(cap)
            while rows < cap:
                nxt = await self._next(deadline - time.perf_counter())
                if nxt is None:
                    break
                if rows + len(nxt.texts) > cap:
                    self._carry = nxt  # does not fit: first in the next batch
                    break
                batch.append(nxt)
                rows += len(nxt.texts)
            self.queued_rows -= rows
            self.metrics.queue_depth.set(self.queue.qsize())
            self.metrics.queue_rows.set(self.queued_rows)
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
                logits, labels = await loop.run_in_executor(self.executor, self.runner.predict, texts)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(Overloaded("server is shutting down", kind="stopping"))
                raise
            except Exception as e:  # the model failed: every request in the batch gets a 500
                log.exception("runner failed on a batch of %d rows", len(texts))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(RuntimeError(f"model failed: {type(e).__name__}: {e}"))
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
            offset = 0
            for p, good in zip(batch, on_time, strict=True):
                k = len(p.texts)
                if not p.future.done():
                    p.future.set_result((logits[offset : offset + k], labels[offset : offset + k]))
                    if good:
                        self.metrics.goodput.inc()
                offset += k
