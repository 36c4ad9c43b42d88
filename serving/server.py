"""The HTTP server shared by the runner-based engines (onnxruntime, pytorch): one server shape,
only the runner differs, so the two engines are compared fairly.

Starlette (ASGI) on uvicorn. Requests pass through:

1. admission by deadline, before the body is read or parsed (:func:`admit`): a request is
   admitted when it joins the next batch, or when its expected queue wait (the rest of the
   running batch + rows ahead × recent batch time ÷ recent batch rows) fits
   ``max_queue_wait_ms``; otherwise 503 with ``Retry-After`` (``inference_shed_total{reason}``);
2. a body-size limit (413) and optional gzip/deflate request decoding;
3. :mod:`serving.protocol` validation (4xx with ``{"error": reason}``);
4. a bounded queue (503 ``queue full`` when it already holds ``max_queue_size`` requests);
5. the :class:`Batcher`: a single task that closes a batch when it holds ``max_batch_size``
   rows or its oldest request has waited ``max_queue_delay_ms``, runs the runner in one worker
   thread, and splits the rows back to their requests. While a batch runs, the next one fills
   up, so batches grow with load and stay at 1 when idle (adaptive dynamic batching).

Metrics (Prometheus text at ``GET /metrics``): ``inference_requests_total`` (every infer POST),
``inference_rejected_total`` (503s) and ``inference_shed_total{reason}`` (why),
``inference_goodput_total`` (answered with a queue wait within the bound),
``inference_expected_queue_wait_seconds`` (the last admission estimate),
``inference_errors_total{code}`` (other non-200s),
``inference_batch_size`` (rows per executed batch), ``inference_rows_total``,
``inference_request_duration_seconds``, ``inference_batch_duration_seconds``,
``inference_queue_wait_seconds``, ``inference_queue_depth``, ``inference_model_info`` and the
process collector (``process_cpu_seconds_total`` …).

SIGINT/SIGTERM: uvicorn stops accepting connections, finishes in-flight requests (the batcher
keeps running until they are answered), then the lifespan shutdown stops the batcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import protocol
from serving.engines.base import EngineSettings, EngineUnavailable
from serving.runners import Runner, SlowRunner, make_runner

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)


class Overloaded(Exception):
    """The queue is full, the deadline cannot be met or the server is stopping (→ 503)."""

    def __init__(self, reason: str, kind: str = "queue_full", retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.kind = kind
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Admission:
    """The admission decision for one request, with the numbers it rests on."""

    admit: bool
    expected_wait_s: float
    #: whole seconds for ``Retry-After`` (HTTP wants delta-seconds, at least 1)
    retry_after_s: int


def admit(
    *, queued_rows: float, running_left_s: float, batch_s: float, batch_rows: float,
    max_batch_size: int, max_wait_s: float, rows: int = 1,
) -> Admission:
    """Admit a request of ``rows`` rows (1 when not parsed yet) or shed it.

    Expected queue wait = what is left of the running batch + the rows ahead × the recent batch
    time ÷ the recent rows per batch (both moving averages). A request that fits in the *next*
    batch (``queued_rows + rows <= max_batch_size``) is always admitted: it is served as early as
    any request can be, and a model whose one batch outlasts the bound still serves. Otherwise
    the wait must fit ``max_wait_s`` (0 = no bound; only ``max_queue_size`` limits the queue).
    Pure and cheap: it runs before the body is read.
    """
    per_row_s = batch_s / max(batch_rows, 1.0)
    wait_s = max(running_left_s, 0.0) + max(queued_rows, 0.0) * per_row_s
    ok = max_wait_s <= 0 or queued_rows + rows <= max_batch_size or wait_s <= max_wait_s
    return Admission(ok, wait_s, max(1, math.ceil(wait_s)))


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    enqueued_s: float = field(default_factory=time.perf_counter)


class Metrics:
    """The Prometheus collectors of one server (own registry: several servers per process in
    tests must not collide)."""

    def __init__(self, labels: dict[str, str]) -> None:
        # The *_created series double the exposition for nothing a scraper here uses.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "inference_requests", "Inference requests received (one per POST …/infer)", registry=r
        )
        self.rejected = Counter(
            "inference_rejected", "Inference requests answered 503 (queue full or stopping)",
            registry=r,
        )
        self.shed = Counter(
            "inference_shed", "Inference requests answered 503, by reason (deadline: the "
            "expected queue wait exceeds max_queue_wait_ms; queue_full; not_ready; stopping)",
            ["reason"], registry=r,
        )
        for reason in ("deadline", "queue_full", "not_ready", "stopping"):
            self.shed.labels(reason=reason)
        self.goodput = Counter(
            "inference_goodput", "Requests answered with their rows whose queue wait was within "
            "max_queue_wait_ms (all answered ones when there is no bound)", registry=r,
        )
        self.expected_wait = Gauge(
            "inference_expected_queue_wait_seconds",
            "Expected queue wait computed by the last admission decision", registry=r,
        )
        self.errors = Counter(
            "inference_errors", "Inference requests answered with another error status",
            ["code"], registry=r,
        )
        self.rows = Counter("inference_rows", "Rows (texts) classified", registry=r)
        self.batch_size = Histogram(
            "inference_batch_size", "Rows per executed model batch", buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "inference_request_duration_seconds", "Server-side latency of successful requests",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_duration = Histogram(
            "inference_batch_duration_seconds", "Runner time per batch (tokenise + model)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.queue_wait = Histogram(
            "inference_queue_wait_seconds", "Time from admission to batch start",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Requests waiting for a batch", registry=r
        )
        self.queue_rows = Gauge(
            "inference_queue_rows", "Rows waiting for a batch (admitted, incl. being parsed)",
            registry=r,
        )
        info = Gauge(
            "inference_model_info", "The served model (value 1)", sorted(labels), registry=r
        )
        info.labels(**labels).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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

    def admission(self, rows: int = 1) -> Admission:
        """Decide on a request not read yet (see :func:`admit`); an admitted one holds a
        reservation until :meth:`submit` or :meth:`release`."""
        now = time.perf_counter()
        running_left = 0.0 if self.running_since is None else self.batch_s - (now - self.running_since)
        decision = admit(
            queued_rows=self.queued_rows + self.reserved, running_left_s=running_left,
            batch_s=self.batch_s, batch_rows=self.batch_rows, max_batch_size=self.max_batch_size,
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
            while rows < self.max_batch_size:
                nxt = await self._next(deadline - time.perf_counter())
                if nxt is None:
                    break
                if rows + len(nxt.texts) > self.max_batch_size:
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
            self.batch_s = took if self.batch_s <= 0 else (1 - a) * self.batch_s + a * took
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


_ADMISSION = "green_pipeline.admission"  # ASGI scope key: the front's admission decision


def _shed_reason(decision: Admission, batcher: Batcher, settings: EngineSettings) -> str:
    return (
        f"server overloaded: expected queue wait {decision.expected_wait_s * 1000:.0f} ms "
        f"exceeds max_queue_wait_ms={settings.max_queue_wait_ms:g} "
        f"({batcher.queued_rows + batcher.reserved} rows ahead); retry later"
    )


def _error(status: int, reason: str, retry_after_s: int = 1) -> Response:
    # A 503 is transient by construction (queue full, warming up, stopping): say when to retry.
    headers = {"retry-after": str(retry_after_s)} if status == 503 else None
    return Response(orjson.dumps({"error": reason}), status_code=status, headers=headers,
                    media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all,
    then undoing ``Content-Encoding`` under the same cap (:func:`protocol.decode_body`)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_n = int(declared)
        except ValueError:
            raise protocol.ProtocolError("Content-Length is not an integer") from None
        if declared_n > limit:
            raise protocol.ProtocolError(
                f"request body of {declared_n} bytes exceeds max_body_bytes={limit}", status=413
            )
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise protocol.ProtocolError(
                    f"request body exceeds max_body_bytes={limit}", status=413
                )
            chunks.append(chunk)
    except ClientDisconnect:
        # The client promised more than it sent and went away: nobody reads this answer, but
        # it is the client's fault, counted as a 400 and not as a server error.
        raise protocol.ProtocolError(
            f"client disconnected after {size} bytes of the body (Content-Length: {declared})"
        ) from None
    return protocol.decode_body(
        b"".join(chunks), request.headers.get("content-encoding"), limit
    )


def create_app(
    runner: Runner, settings: EngineSettings, engine: str, extra_metadata: dict | None = None,
    initial_batch_s: float = 0.0,
) -> Any:
    """The ASGI app serving ``runner`` under ``settings.model_name`` (Starlette behind a small
    ASGI front that sheds overloaded infer requests; ``.state.metrics`` holds the metrics).

    ``initial_batch_s``: the warm-up batch's duration, the admission estimate until real batches
    have run."""
    model_name = settings.model_name
    meta_params = {
        "engine": engine,
        "variant": settings.variant,
        "format": settings.format or "",
        "max_batch_size": settings.max_batch_size,
        "max_queue_delay_ms": settings.max_queue_delay_ms,
        "max_queue_size": settings.max_queue_size,
        "max_queue_wait_ms": settings.max_queue_wait_ms,
        **runner.describe(),
        **(extra_metadata or {}),
    }
    metrics = Metrics(
        {"model": model_name, "engine": engine, "variant": settings.variant,
         "format": settings.format or ""}
    )
    state: dict[str, Any] = {"ready": False, "batcher": None}

    def check_model(request: Request) -> JSONResponse | None:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        if name != model_name:
            return _error(404, f"unknown model {name!r}; this server serves {model_name!r}")
        if version not in (None, "", MODEL_VERSION):
            return _error(404, f"unknown version {version!r} of {model_name!r}; available: ['1']")
        return None

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        if state["ready"]:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": "model not ready"}, status_code=503)

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(
            {"name": f"green-pipeline-{engine}", "version": "0.1.0",
             "extensions": ["binary_tensor_data", "model_repository"]}
        )

    async def model_meta(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        return JSONResponse(
            protocol.model_metadata(model_name, MODEL_VERSION, platform=engine, parameters=meta_params)
        )

    async def model_ready(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        return await ready(request)

    async def model_cfg(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        return JSONResponse(
            protocol.model_config(
                model_name, settings.max_batch_size, settings.max_queue_delay_ms, platform=engine
            )
        )

    async def repository_index(request: Request) -> Response:
        state_str = "READY" if state["ready"] else "UNAVAILABLE"
        return JSONResponse([{"name": model_name, "version": MODEL_VERSION, "state": state_str}])

    async def infer(request: Request) -> Response:
        metrics.requests.inc()
        start = time.perf_counter()
        try:
            if (bad := check_model(request)) is not None:
                metrics.errors.labels(code="404").inc()
                return bad
            if not state["ready"]:
                raise Overloaded("model not ready", kind="not_ready")
            batcher: Batcher = state["batcher"]
            # Decided on the queue alone: the body is neither read nor parsed for a shed request.
            # (On the served model's infer paths the ASGI front below has decided already.)
            decision = request.scope.get(_ADMISSION) or batcher.admission()
            if not decision.admit:
                raise Overloaded(_shed_reason(decision, batcher, settings), kind="deadline",
                                 retry_after_s=decision.retry_after_s)
            try:
                body = await _read_body(request, settings.max_body_bytes)
                req = protocol.parse_infer_request(
                    body, request.headers.get(protocol.HEADER_LENGTH),
                    max_batch_size=settings.max_batch_size,
                )
            except BaseException:
                batcher.release()
                raise
            logits, labels = await batcher.submit(req.texts, reserved=True)
            payload, headers = protocol.build_infer_response(
                model_name, MODEL_VERSION, req, logits, labels
            )
        except protocol.ProtocolError as e:
            metrics.errors.labels(code=str(e.status)).inc()
            return _error(e.status, e.reason)
        except Overloaded as e:
            metrics.rejected.inc()
            metrics.shed.labels(reason=e.kind).inc()
            return _error(503, str(e), e.retry_after_s)
        except Exception as e:  # a model failure: answer it, keep serving
            metrics.errors.labels(code="500").inc()
            log.warning("infer failed: %s", e)
            return _error(500, str(e))
        metrics.request_duration.observe(time.perf_counter() - start)
        media = headers.pop("content-type")
        return Response(payload, media_type=media, headers=headers)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        reason = exc.detail
        if exc.status_code == 404:
            reason = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            reason = f"method {request.method} not allowed on {request.url.path}"
        return _error(exc.status_code, reason)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batcher = Batcher(
            runner, metrics, settings.max_batch_size, settings.max_queue_delay_ms,
            settings.max_queue_size, settings.max_queue_wait_ms, initial_batch_s,
        )
        batcher.start()
        state["batcher"], state["ready"] = batcher, True
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop()

    m = "/v2/models/{model}"
    mv = "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    for prefix in (m, mv):
        routes += [
            Route(prefix, model_meta, methods=["GET"]),
            Route(prefix + "/ready", model_ready, methods=["GET"]),
            Route(prefix + "/config", model_cfg, methods=["GET"]),
            Route(prefix + "/infer", infer, methods=["POST"]),
        ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.metrics = metrics
    infer_paths = {f"{m}/infer", f"{mv}/infer"}
    infer_paths = {p.replace("{model}", model_name).replace("{version}", MODEL_VERSION)
                   for p in infer_paths}

    async def front(scope, receive, send) -> None:
        """Sheds an infer request before Starlette sees it (no routing, no Request object, a
        preformatted answer): under overload most requests end here, so this is the cost of a
        503. Admitted ones go on with the decision attached (their reservation is held)."""
        if (scope["type"] == "http" and scope["path"] in infer_paths
                and scope["method"] == "POST" and state["ready"]):
            batcher: Batcher = state["batcher"]
            decision = batcher.admission()
            if not decision.admit:
                metrics.requests.inc()
                metrics.rejected.inc()
                metrics.shed.labels(reason="deadline").inc()
                body = orjson.dumps({"error": _shed_reason(decision, batcher, settings)})
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(decision.retry_after_s).encode()),
                ]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, _ADMISSION: decision}
        await app(scope, receive, send)

    front.state = app.state  # type: ignore[attr-defined]
    return front


def serve_app(app: Any, settings: EngineSettings) -> None:
    """Run ``app`` on uvicorn in the foreground; SIGINT/SIGTERM shut it down gracefully."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        backlog=2048,
    )
    uvicorn.Server(config).run()


class RunnerEngine:
    """Base of the engines that are "this HTTP server + a runner" (onnxruntime, pytorch)."""

    name = ""
    default_format = ""
    formats: tuple[str, ...] = ()
    runner_kind = ""  # make_runner's engine argument
    health_path = "/v2/health/ready"

    def artifact_path(self, settings: EngineSettings) -> Path:
        """The file or directory this engine loads (must exist before ``serve``)."""
        raise NotImplementedError

    def ports(self, settings: EngineSettings) -> list[int]:
        return [settings.port]

    def check(self, settings: EngineSettings) -> None:
        fmt = settings.format or self.default_format
        if fmt not in self.formats:
            raise ValueError(
                f"engine {self.name} cannot serve format {fmt!r}; allowed: {list(self.formats)}"
            )

    def build_runner(self, settings: EngineSettings) -> Runner:
        """Load the model (raises :class:`EngineUnavailable` for a missing provider/device)."""
        runner = make_runner(
            self.runner_kind,
            self.artifact_path(settings),
            max_length=settings.max_length,
            threads=settings.threads,
            inter_op_threads=settings.inter_op_threads,
            provider=settings.provider,
            device=settings.device,
            dtype=settings.dtype,
            max_batch_tokens=settings.max_batch_tokens,
        )
        if settings.batch_delay_ms > 0:
            runner = SlowRunner(runner, settings.batch_delay_ms)
        return runner

    def serve(self, settings: EngineSettings) -> None:
        """Load, warm up (one tiny batch, so the first request is not a cold one), serve."""
        if settings.format is None:
            settings.format = self.default_format
        self.check(settings)
        if not Path(self.artifact_path(settings)).exists():
            raise FileNotFoundError(
                f"{self.artifact_path(settings)} is missing; run "
                f"`python -m serving.export --variant {settings.variant} --format {settings.format}`"
            )
        runner = self.build_runner(settings)
        start = time.perf_counter()
        runner.predict(["int main(void) { return 0; }"])
        warm_s = time.perf_counter() - start
        serve_app(create_app(runner, settings, self.name, initial_batch_s=warm_s), settings)


__all__ = ["Batcher", "EngineUnavailable", "Metrics", "RunnerEngine", "create_app", "serve_app"]
