"""The load test's typed settings (:class:`RunConfig`) and the facts every part of it shares.

Built by the CLI (:mod:`loadtest.run`) or directly by tests; every value is checked here, so a
bad setting fails before any process starts, naming the key and the allowed values.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from energy.carbon import grid_intensity_info
from loadtest.shapes import LoadSpec
from loadtest.summary import DEFAULT_LATE_THRESHOLD_MS, DEFAULT_MAX_ERROR_RATE
from serving.engines.registry import ENGINE_NAMES, FACTS, OIP_HEALTH_PATH
from study.paths import Paths, artifacts_root, load_results_root

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# Engine facts come from the engine registry (serving/engines/registry.py,
# `python -m serving.engines describe ENGINE`), never a copy. "default": an Open Inference
# Protocol server outside the registry counts and reports readiness like serving/server.py.
ENGINES = ENGINE_NAMES
DEFAULT_FORMAT = {name: f.default_format for name, f in FACTS.items()}
MODEL_NAME = "bigvul-modernbert"
RECORDS_SUBDIR = "requests"  # repeat-<k>/requests/requests-<phase>-<pid>.csv (locustfile.py)
# Prometheus counters that count one per received inference request, per engine.
SERVER_COUNTERS = {"default": FACTS["onnxruntime"].request_counters,
                   **{name: f.request_counters for name, f in FACTS.items()}}
HEALTH_PATH = {"default": OIP_HEALTH_PATH, **{name: f.health_path for name, f in FACTS.items()}}


INTERRUPTED = "interrupted (Ctrl-C)"


class RepeatFailed(Exception):
    """A repeat could not reach or finish its steady window; the message is the one line shown."""


@dataclass
class RunConfig:
    """Everything one invocation needs (built from the CLI; tests build it directly)."""

    engine: str
    variant: str = "v0"
    format: str | None = None
    url: str | None = None  # attach to a running server instead of starting one
    metrics_url: str | None = None  # default: <url>/metrics
    specs: list[LoadSpec] = field(default_factory=lambda: [LoadSpec(users=8)])
    duration_s: float = 20.0
    requests: int | None = None  # end the steady window after this many requests instead
    warmup_s: float = 5.0
    idle_s: float = 5.0
    settle_s: float = 2.0  # after the server is ready, before the idle baseline
    stable: bool = False  # run the steady phase in sub-windows until stable (loadtest.stability)
    stable_window_s: float = 5.0
    max_windows: int = 12
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES syntax: what the server uses and the sidecar measures
    server_cpus: list[int] | None = None  # CPU affinity of the server's tree (None: any)
    client_cpus: list[int] | None = None  # CPU affinity of the Locust processes
    repeats: int = 1
    workers: int = 0
    meter: str = "auto"
    interval_s: float = 0.1
    country: str = "FRA"
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    late_threshold_ms: float = DEFAULT_LATE_THRESHOLD_MS
    timeout_s: float = 60.0
    startup_timeout_s: float = 600.0
    artifacts_dir: str | None = None  # artifacts root (None: $ARTIFACTS, else artifacts/)
    results_dir: str | None = None  # results root (None: $RESULTS_DIR, else results/)
    data: str | None = None
    max_items: int | None = None
    model_name: str = MODEL_NAME
    run_id: str | None = None
    seed: int = 0
    server_args: list[str] = field(default_factory=list)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is invalid; allowed: {', '.join(ENGINES)}")
        for key, lo in (("duration_s", 1.0), ("warmup_s", 0.0), ("idle_s", 0.0), ("settle_s", 0.0),
                        ("interval_s", 0.01), ("timeout_s", 0.1), ("startup_timeout_s", 1.0),
                        ("stable_window_s", 1.0)):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= lo):
                raise ValueError(f"{key}={v!r} is invalid; allowed: a number >= {lo}")
        if self.max_windows < 3:
            raise ValueError(f"max_windows={self.max_windows!r} is invalid; allowed: an integer >= 3")
        if self.server_cpus and self.client_cpus and set(self.server_cpus) & set(self.client_cpus):
            raise ValueError(f"server_cpus={self.server_cpus} and client_cpus={self.client_cpus} "
                             "overlap; allowed: disjoint CPU sets (or leave one unset)")
        if self.repeats < 1:
            raise ValueError(f"repeats={self.repeats!r} is invalid; allowed: an integer >= 1")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers!r} is invalid; allowed: 0 (local) or >= 1")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"requests={self.requests!r} is invalid; allowed: an integer >= 1")
        if not 0 <= self.max_error_rate <= 1:
            raise ValueError(f"max_error_rate={self.max_error_rate!r} is invalid; allowed: 0..1")
        grid_intensity_info(self.country)  # ValueError naming the known codes, before any work
        if self.format is None:
            self.format = DEFAULT_FORMAT[self.engine]
        # Both roots resolved once (absolute, recorded so in config.json); runs go to
        # <results>/load/<engine>__<variant>/<run_id>/ (study.paths).
        self.artifacts_dir = str(artifacts_root(self.artifacts_dir))
        root, note = load_results_root(self.results_dir)
        if note:
            print(f"loadtest: {note}", file=sys.stderr)
        self.results_dir = str(root)

    @property
    def paths(self) -> Paths:
        return Paths(Path(str(self.artifacts_dir)), Path(str(self.results_dir)))

    @property
    def protocol(self) -> str:
        return FACTS[self.engine].protocol


def utc_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def server_parser(prog: str, description: str, *, interval_s: float) -> argparse.ArgumentParser:
    """A parser with the options of the server a load test (``loadtest.run``) or an exploring
    session (``loadtest.explore``) starts: engine, artifact, roots, meter."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--engine", required=True, choices=ENGINES, help="serving engine")
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant (default v0)")
    p.add_argument("--format", default=None, help="export format (default: the engine's)")
    p.add_argument("--meter", default=os.environ.get("METER", "auto"),
                   help="power meter spec of the sidecar (auto, estimate, nvml, rapl, replay:<csv>, …)")
    p.add_argument("--interval-s", type=float, default=interval_s,
                   help=f"sidecar sampling period, s (default {interval_s:g})")
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS, else artifacts)")
    p.add_argument("--results-dir", default=None,
                   help="results root (default $RESULTS_DIR, else results); load runs go to "
                   "<root>/load/<engine>__<variant>/<run_id>/, Locust's to <root>/locust/…")
    p.add_argument("--model-name", default=MODEL_NAME, help="served model name")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="server start-up limit, s")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for serving.serve (repeatable, e.g. --server-arg=--threads=2)")
    return p
