"""The HTTP server shared by the runner-based engines (onnxruntime, pytorch): one server shape,
only the runner differs, so the two engines are compared fairly.

Starlette (ASGI) on uvicorn. Requests pass through:

1. admission by deadline, before the body is read or parsed (:func:`serving.admission.admit`):
   a request is admitted when it joins the next batch, or when its expected queue wait (the
   rest of the running batch + rows ahead × recent batch time ÷ recent batch rows) fits
   ``max_queue_wait_ms``; otherwise 503 with ``Retry-After`` (``inference_shed_total{reason}``);
2. a body-size limit (413) and optional gzip/deflate request decoding;
3. :mod:`serving.protocol` validation (4xx with ``{"error": reason}``);
4. a bounded queue (503 ``queue full`` when it already holds ``max_queue_size`` requests);
5. the :class:`serving.batcher.Batcher`: one runner thread that closes a batch when it holds
   its cap (``max_batch_size``, fewer under ``max_queue_wait_ms``) or its oldest request has
   waited ``max_queue_delay_ms``, runs the runner, and hands the rows back to their requests.
   While a batch runs, the next one fills up, so batches grow with load and stay at 1 when idle.

Metrics (:mod:`serving.server_metrics`; Prometheus text at ``GET /metrics``):
``inference_requests_total`` (every infer POST),
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

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import protocol
from serving.admission import Admission, Overloaded, admit
from serving.batcher import Batcher
from serving.engines.base import EngineSettings, EngineUnavailable
from serving.runners import Runner, SlowRunner, make_runner
from serving.server_metrics import Metrics

log = logging.getLogger(__name__)

MODEL_VERSION = "1"
#: idle keep-alive connections are closed after this (nginx's default; uvicorn's is 5 s)
KEEP_ALIVE_S = 75


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


def http_stack() -> dict[str, str]:
    """uvicorn's HTTP parser and event loop: the C ones (httptools, uvloop; requirements.txt)
    when installed, else the pure-Python h11 and asyncio. Recorded in the model metadata.

    Measured (docs/serving.md "Benchmarks"): httptools + uvloop cut the event loop's share of a
    loaded server, which on 2 cores shared with the load client is CPU the model does not get.
    """
    import importlib.util

    return {
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
    }


def serve_app(app: Any, settings: EngineSettings) -> None:
    """Run ``app`` on uvicorn in the foreground; SIGINT/SIGTERM shut it down gracefully."""
    import uvicorn

    stack = http_stack()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
        backlog=2048,
        # Longer than a client's idle gaps: with uvicorn's 5 s, a Poisson client of a 1,000-user
        # pool (gaps > 5 s happen) raced the server's close and lost a request now and then.
        timeout_keep_alive=KEEP_ALIVE_S,
        http=stack["http"],
        loop=stack["loop"],
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
        stack = {f"{k}_impl": v for k, v in http_stack().items()}
        app = create_app(runner, settings, self.name, extra_metadata=stack, initial_batch_s=warm_s)
        serve_app(app, settings)


__all__ = ["Admission", "Batcher", "EngineUnavailable", "Metrics", "Overloaded", "RunnerEngine", "admit",
           "create_app", "serve_app"]
