"""Run a load test end to end and write its ``summary.json``: ``python -m loadtest.run --help``.

For every load level and every repeat, in one sequence of real processes::

    power sidecar (energy.sidecar) ─┬─ mark system_start → start the server (python -m serving.serve)
                                    │   → GET /v2/health/ready answers 200 → mark ready   [system]
                                    ├─ mark idle_start … idle_s … mark idle_end            [idle]
                                    ├─ mark warmup_start → Locust for warmup_s → warmup_end [warm-up,
                                    │                                                       excluded]
                                    ├─ scrape /metrics → Locust for duration_s → scrape     [inference]
                                    │   steady_start / steady_end marks = the first send and the
                                    │   last completion in Locust's own per-request timestamps
                                    └─ stop the server → stop the sidecar

Energy of each window comes from the sidecar's power CSV through
:func:`energy.trace.record_from_csv`; the idle window's mean power is the ``idle_w`` that gives
every net figure. Results go to ``<results>/load/<engine>__<variant>/<run_id>/`` (``--results-dir``
is the results root; :meth:`study.paths.Paths.load_run`): ``summary.json``
(mean over ok repeats + 95 % CI, every repeat listed) and ``repeat-<k>/`` with Locust's CSVs, the
per-request CSVs, ``power.csv`` (+ marks), the server log and the repeat's own ``summary.json``.

A repeat whose server died, whose error rate exceeds ``--max-error-rate`` or that never reached
its steady window is written with ``status: failed`` and its reason, keeps its partial data,
and is never averaged in. Failures print one line, never a traceback (the traceback, if any,
goes to ``repeat-<k>/error.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtest.config import (  # noqa: F401  (re-exported: the CLI's public names)
    DEFAULT_FORMAT,
    ENGINES,
    INTERRUPTED,
    MODEL_NAME,
    RunConfig,
    server_parser,
    utc_run_id,
)
from loadtest.cpu import parse_cpus
from loadtest.phases import run_repeat
from loadtest.repeats import aggregate_repeats
from loadtest.shapes import LoadSpec, specs_for
from loadtest.summary import DEFAULT_LATE_THRESHOLD_MS, DEFAULT_MAX_ERROR_RATE
from study.io import write_json_atomic, write_text_atomic
from study.paths import REPO_ROOT
from study.process import child_env


def write_requests_file(path: Path, data: str | None, max_items: int | None,
                        model_dir: Path | None = None) -> int:
    """Write the real BigVul test-split functions the load client sends: one JSON per line.

    The split is the one the served model was trained with (``split.json`` in its artifact:
    split seed, fractions), so the functions sent are held out from its training
    (``--seed`` only orders requests).
    """
    from training.data import load_split_for_artifact  # pandas: only here, never in Locust

    df = load_split_for_artifact("test", model_dir, data_path=data)
    if max_items is not None:
        df = df.head(max_items)
    if len(df) == 0:
        raise ValueError("the test split is empty; check --data")
    pairs = df["pair"] if "pair" in df.columns else [None] * len(df)
    lines = [json.dumps({"text": str(t), "label": int(y), **({"pair": str(p)} if p is not None else {})})
             for t, y, p in zip(df["text"], df["label"], pairs, strict=True)]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return len(lines)



# --------------------------------------------------------------------------- a run


def run_level(cfg: RunConfig, spec: LoadSpec, run_id: str, requests_file: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """All repeats of one load level → ``<results>/load/<engine>__<variant>/<run_id>/summary.json``."""
    run_dir = cfg.paths.load_run(cfg.engine, cfg.variant, run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    if requests_file is None:
        requests_file = run_dir / "requests.jsonl"
        write_requests_file(requests_file, cfg.data, cfg.max_items,
                            model_dir=cfg.paths.model_dir(cfg.variant))
    write_json_atomic(run_dir / "config.json", {
        **{k: v for k, v in vars(cfg).items() if k != "specs"}, "load": spec.to_dict(), "run_id": run_id,
    })
    repeats: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for k in range(1, cfg.repeats + 1):
        print(f"[load] {cfg.engine}/{cfg.variant} {spec.label} repeat {k}/{cfg.repeats} → {run_dir}",
              file=sys.stderr, flush=True)
        rep = run_repeat(cfg, spec, run_dir, k, requests_file, run_id)
        repeats.append(rep)
        if rep["status"] == "degraded":
            print(f"[load] repeat {k} degraded: {', '.join(rep.get('flags') or [])}", file=sys.stderr, flush=True)
        elif rep["status"] != "ok":
            print(f"[load] repeat {k} FAILED: {rep['failure_reason']}", file=sys.stderr, flush=True)
        # Written after every repeat, so an interrupted run still leaves a valid summary.
        summary = aggregate_repeats(repeats)
        write_json_atomic(run_dir / "summary.json", summary)
        if rep.get("failure_reason") == INTERRUPTED:
            raise KeyboardInterrupt
    return run_dir, summary


def prepare_artifacts(cfg: RunConfig) -> None:
    """Make sure the engine's artifact exists (train/export when missing) before measuring.

    Raises ``RuntimeError`` with the builder's last output lines when that fails.
    """
    # Built *before* the sidecar starts, so a build never lands in the measured system window.
    cmd = [sys.executable, "-m", "serving.serve", "--build-only", "--engine", cfg.engine,
           "--variant", cfg.variant, "--format", cfg.format, "--artifacts-dir", cfg.artifacts_dir]
    proc = subprocess.run(cmd, env=child_env(), cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise RuntimeError(
            f"could not prepare the {cfg.engine} artifact of {cfg.variant} "
            f"(format {cfg.format}): {lines[-1] if lines else f'exit status {proc.returncode}'}"
        )


def run(cfg: RunConfig) -> list[tuple[Path, dict[str, Any]]]:
    """Every load level of ``cfg`` (one run directory per level); returns (dir, summary) pairs."""
    base_id = cfg.run_id or utc_run_id()
    if not cfg.url:
        prepare_artifacts(cfg)
    out = []
    requests_file: Path | None = None
    for spec in cfg.specs:
        run_id = base_id if len(cfg.specs) == 1 else f"{base_id}-{spec.label}"
        run_dir, summary = run_level(cfg, spec, run_id, requests_file)
        requests_file = run_dir / "requests.jsonl"  # one copy of the data for the whole sweep
        out.append((run_dir, summary))
    return out


def headline(summary: dict[str, Any]) -> str:
    """One line of the figures a reader wants first."""

    def f(x: Any, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    e = summary.get("energy_per_1k_wh") or {}
    lat = summary.get("latency_ms") or {}
    served = summary.get("served") or {}
    req = summary.get("requests") or {}
    return (
        f"{summary.get('status')}: {f(e.get('server'), '.4g')} Wh/1k server-attributed, "
        f"{f(e.get('gross'), '.4g')} Wh/1k gross, {f(e.get('net'), '.4g')} Wh/1k net "
        f"({summary.get('energy_kind')}, {summary.get('energy_source')}); "
        f"{f(summary.get('throughput_rps'), '.1f')} req/s; p50 {f(lat.get('p50'), '.1f')} ms, "
        f"p99 {f(lat.get('p99'), '.1f')} ms; ok {f(req.get('ok'), '.0f')}, failed {f(req.get('failed'), '.0f')}, "
        f"server counted {f(req.get('server_counted'), '.0f')}; served F1 {f(served.get('f1'), '.3f')}, "
        f"MCC {f(served.get('mcc'), '.3f')}"
        + (f"; flags: {', '.join(summary['flags'])}" if summary.get("flags") else "")
    )


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = server_parser("python -m loadtest.run", "Load-test a serving engine with Locust and measure "
                      "energy per 1k requests (power sidecar → server start [system] → idle baseline "
                      "→ warm-up → steady window).", interval_s=0.1)
    load = p.add_mutually_exclusive_group()
    load.add_argument("--users", type=int, default=None, help="closed loop: concurrent users (default 8)")
    load.add_argument("--rps", type=float, default=None, help="open loop: Poisson arrival rate (req/s)")
    p.add_argument("--sweep", default=None,
                   help="comma-separated levels, one run each: users (closed) or rates with --sweep-kind rps")
    p.add_argument("--sweep-kind", default="users", choices=["users", "rps"], help="what --sweep varies")
    p.add_argument("--pool", type=int, default=None, help="open loop: users the rate is spread over")
    p.add_argument("--batch", type=int, default=1, help="functions per request (default 1)")
    p.add_argument("--duration", type=float, default=20.0, help="steady window length, s (default 20)")
    p.add_argument("--requests", type=int, default=None,
                   help="end the steady window after this many requests instead of --duration")
    p.add_argument("--warmup", type=float, default=5.0, help="warm-up load before the steady window, s")
    p.add_argument("--idle", type=float, default=5.0, help="idle baseline with the server up, s")
    p.add_argument("--settle", type=float, default=2.0,
                   help="wait after the server is ready, before the idle baseline, s (default 2)")
    p.add_argument("--stable", action="store_true",
                   help="run the steady phase in sub-windows until the last 3 agree within ±10 %% "
                   "on throughput, p50 and J/request (else flag not_stable)")
    p.add_argument("--stable-window", type=float, default=5.0, help="--stable sub-window, s (default 5)")
    p.add_argument("--max-windows", type=int, default=12, help="--stable: give up after this many sub-windows")
    p.add_argument("--gpus", default=None,
                   help="GPUs the server uses and the sidecar measures (CUDA_VISIBLE_DEVICES syntax: "
                   "indices or UUIDs); default: the inherited CUDA_VISIBLE_DEVICES")
    p.add_argument("--server-cpus", default=os.environ.get("SERVER_CPUS") or None,
                   help="pin the server's process tree to these CPUs (e.g. 0 or 0-1); recorded")
    p.add_argument("--client-cpus", default=os.environ.get("CLIENT_CPUS") or None,
                   help="pin the Locust processes to these CPUs (disjoint from --server-cpus); recorded")
    p.add_argument("--repeats", type=int, default=1, help="repeats (mean and 95 %% CI across them)")
    p.add_argument("--workers", type=int, default=0,
                   help="Locust workers (0: one local process; n: master + n workers)")
    p.add_argument("--url", default=None, help="attach to a running server instead of starting one")
    p.add_argument("--metrics-url", default=None, help="server's Prometheus endpoint (default <url>/metrics)")
    p.add_argument("--country", default=os.environ.get("COUNTRY", "FRA"), help="ISO-3 country for CO₂")
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE,
                   help="fail a repeat whose failed/all requests exceeds this (default 0.05)")
    p.add_argument("--late-threshold-ms", type=float, default=DEFAULT_LATE_THRESHOLD_MS,
                   help="open loop: an arrival sent later than this after its target is 'late'")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, s")
    p.add_argument("--data", default=None, help="BigVul CSV (default: the embedded sample)")
    p.add_argument("--max-items", type=int, default=None, help="use only the first N test functions")
    p.add_argument("--run-id", default=None, help="run id (default: UTC timestamp)")
    p.add_argument("--seed", type=int, default=0, help="seed of request order and arrivals")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    specs = specs_for(users=args.users, rps=args.rps, sweep=args.sweep, sweep_kind=args.sweep_kind,
                      pool=args.pool, batch=args.batch)
    return RunConfig(
        engine=args.engine, variant=args.variant, format=args.format, url=args.url,
        metrics_url=args.metrics_url, specs=specs, duration_s=args.duration, requests=args.requests,
        warmup_s=args.warmup, idle_s=args.idle, settle_s=args.settle, stable=args.stable,
        stable_window_s=args.stable_window, max_windows=args.max_windows,
        gpus=args.gpus, server_cpus=parse_cpus(args.server_cpus, "--server-cpus"),
        client_cpus=parse_cpus(args.client_cpus, "--client-cpus"),
        repeats=args.repeats, workers=args.workers,
        meter=args.meter, interval_s=args.interval_s, country=args.country,
        max_error_rate=args.max_error_rate, late_threshold_ms=args.late_threshold_ms,
        timeout_s=args.timeout, startup_timeout_s=args.startup_timeout,
        artifacts_dir=args.artifacts_dir, results_dir=args.results_dir, data=args.data,
        max_items=args.max_items, model_name=args.model_name, run_id=args.run_id, seed=args.seed,
        server_args=list(args.server_arg), progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"loadtest: {e}", file=sys.stderr)
        return 2
    try:
        results = run(cfg)
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as e:
        print(f"loadtest: {e}", file=sys.stderr)
        return 1
    failed = 0
    for run_dir, summary in results:
        print(f"{run_dir / 'summary.json'}")
        print(f"  {headline(summary)}")
        if summary.get("status") == "degraded":
            print(f"  DEGRADED (kept, not averaged with ok repeats): {'; '.join(summary.get('warnings') or [])}")
        elif summary.get("status") != "ok":
            failed += 1
            print(f"  FAILED: {summary.get('failure_reason')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

