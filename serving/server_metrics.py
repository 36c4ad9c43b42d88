"""The Prometheus collectors of the shared server (``GET /metrics``; names in docs/serving.md)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256)


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
        self.batch_cap = Gauge(
            "inference_batch_cap", "Rows the next batch may hold: max_batch_size, or fewer under "
            "max_queue_wait_ms (as many as run in half of it at the recent time per row)", registry=r,
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
