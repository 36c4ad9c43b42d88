"""The processes of a load test: the server under test and the Locust client.

:class:`Server` starts ``python -m serving.serve`` in its own process group (or attaches to a
URL) and says why it stopped serving; :func:`run_locust` runs one headless Locust phase
(locally, or master + workers) while watching the server. Both honour the CPU affinity of
:class:`~loadtest.config.RunConfig`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.config import (
    LOCUSTFILE,
    RECORDS_SUBDIR,
    SERVER_COUNTERS,
    RepeatFailed,
    RunConfig,
)
from loadtest.cpu import affinity_preexec
from loadtest.shapes import LoadSpec
from serving.engines.registry import facts as engine_facts
from study.io import write_text_atomic
from study.paths import REPO_ROOT
from study.process import (
    Launched,
    NotReady,
    child_env,
    free_port,
    http_get,
)
from study.prometheus import scrape_sum


def scrape_count(metrics_url: str, engine: str, model: str | None = None) -> float | None:
    """Requests the server has counted so far for ``model`` (``None`` when its metrics cannot be
    read)."""
    return scrape_sum(metrics_url, SERVER_COUNTERS.get(engine, SERVER_COUNTERS["default"]), model)


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
    client_pids: list[int] | None = None,
    stop_when: Callable[[], str | None] | None = None,
) -> LocustPhase:
    """Run Locust headless (locally, or master + ``cfg.workers`` workers) for ``run_s`` seconds.

    Every ``0.5 s`` the server is checked (``server_alive`` returns why it is down, or None):
    a dead server stops Locust at once. With ``max_requests`` the phase ends when the client
    has recorded that many requests. Users finish their in-flight request before stopping
    (``--stop-timeout``), so every request the server counted is also in the client's records.
    The Locust pids are appended to ``client_pids`` (the CPU accountant's client group) as they
    start; ``stop_when`` (e.g. the stability monitor) may end the phase early with a reason.
    """
    records_dir = rep_dir / RECORDS_SUBDIR
    csv_prefix = rep_dir / f"locust-{phase}"
    env = child_env()
    # The locustfile's own options (loadtest/live.py), the same a user gives plain Locust; the
    # workers receive them from the master. --meter off: this run's sidecar does the measuring.
    options = ["--requests-file", str(requests_file), "--records-dir", str(records_dir),
               "--phase", phase, "--protocol", cfg.protocol, "--model", cfg.model_name,
               "--request-timeout", repr(cfg.timeout_s), "--seed", str(cfg.seed), "--meter", "off",
               *spec.locust_options()]
    run_time = max(1, math.ceil(run_s))
    stop_timeout = max(1, math.ceil(min(cfg.timeout_s, 30.0)))
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
    cmd = [*common, *options, "--headless", "--host", url, *spec.locust_args(), "-t", f"{run_time}s",
           "--stop-timeout", str(stop_timeout), "--csv", str(csv_prefix), "--only-summary",
           "--exit-code-on-error", "0", "--logfile", str(rep_dir / f"locust-{phase}.log")]
    out_log = rep_dir / f"locust-{phase}.out"
    if cfg.workers > 0:
        port = free_port()
        cmd += ["--master", "--expect-workers", str(cfg.workers), "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(port)]
    started = time.time()
    pin = affinity_preexec(cfg.client_cpus)
    master = Launched(cmd, name="Locust master", log=out_log, env=env, cwd=REPO_ROOT, preexec=pin).start()
    workers = [Launched([*common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                         "--logfile", str(rep_dir / f"locust-{phase}-worker{i}.log")],
                        name=f"Locust worker {i}", log=out_log, env=env, cwd=REPO_ROOT, preexec=pin).start()
               for i in range(cfg.workers)]
    procs = [master, *workers]
    if client_pids is not None:
        client_pids.extend(p.pid for p in procs if p.pid is not None)
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
        deadline = started + run_time + stop_timeout + 30.0 + (10.0 if cfg.workers else 0.0)
        while master.alive():
            time.sleep(0.5)
            why = server_alive()
            if why and result.server_failure is None:
                result.server_failure = why
                result.stopped_early = why
                master.stop(timeout_s=stop_timeout + 10)
                break
            n_rec = None
            if max_requests is not None or bar is not None:
                n_rec = _count_rows(sorted(records_dir.glob(f"requests-{phase}-*.csv")))
            if max_requests is not None and n_rec is not None and n_rec >= max_requests:
                result.stopped_early = f"reached {max_requests} requests"
                master.stop(timeout_s=stop_timeout + 10)
                break
            done = stop_when() if stop_when is not None else None
            if done:
                result.stopped_early = done
                master.stop(timeout_s=stop_timeout + 10)
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
                master.stop(timeout_s=10)
                break
    finally:
        if bar is not None:
            bar.close()
        master.stop(timeout_s=stop_timeout + 10)
        for w in workers:
            if w.wait(timeout_s=15) is None:
                w.stop(timeout_s=5)
            w.stop()
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
        self.launched: Launched | None = None
        self.log_path = rep_dir / "server.log"
        self._dead_checks = 0
        facts = engine_facts(cfg.engine)  # ports, metrics URL, health path: the engine registry's
        if cfg.url:
            self.url = cfg.url.rstrip("/")
            default_metrics = f"{self.url}{facts.metrics_path}"
        else:
            self.port = free_port(facts.consecutive_ports())
            self.url = f"http://127.0.0.1:{self.port}"
            default_metrics = facts.metrics_url("127.0.0.1", self.port, os.environ)
        self.metrics_url = cfg.metrics_url or default_metrics
        self.health_url = self.url + facts.health_path

    def start(self) -> None:
        if self.cfg.url:
            return
        cmd = [sys.executable, "-m", "serving.serve", "--engine", self.cfg.engine,
               "--variant", self.cfg.variant, "--format", str(self.cfg.format),
               "--host", "127.0.0.1", "--port", str(self.port),
               "--artifacts-dir", self.cfg.artifacts_dir, "--model-name", self.cfg.model_name,
               *self.cfg.server_args]
        env = child_env({"CUDA_VISIBLE_DEVICES": self.cfg.gpus} if self.cfg.gpus is not None else None)
        self.launched = Launched(cmd, name="server", log=self.log_path, env=env, cwd=REPO_ROOT,
                                 preexec=affinity_preexec(self.cfg.server_cpus)).start()
        write_text_atomic(self.log_path.with_name("server.pid"), f"{self.launched.pid}\n")

    @property
    def pid(self) -> int | None:
        """The server process's pid (None when attached to a URL)."""
        return self.launched.pid if self.launched is not None else None

    def wait_ready(self, timeout_s: float) -> None:
        if self.launched is None:  # attached: the URL must answer within the timeout
            deadline = time.monotonic() + timeout_s
            while http_get(self.health_url)[0] != 200:
                if time.monotonic() > deadline:
                    raise RepeatFailed(f"server not ready after {timeout_s:.0f} s at {self.health_url}")
                time.sleep(0.2)
            return
        try:
            self.launched.wait_ready(url=self.health_url, timeout_s=timeout_s, poll_s=0.2)
        except NotReady as e:
            raise RepeatFailed(str(e)) from None

    def failure(self) -> str | None:
        """Why the server is not serving any more, or None."""
        if self.launched is not None:
            rc = self.launched.returncode
            return None if rc is None else f"server exited with code {rc} during the steady window"
        # Attached: three failed health checks in a row (≥ 1.5 s) mean it is gone.
        if http_get(self.health_url, timeout_s=1.0)[0] == 200:
            self._dead_checks = 0
            return None
        self._dead_checks += 1
        return f"server at {self.url} stopped answering health checks" if self._dead_checks >= 3 else None

    def stop(self) -> int | None:
        # The server leads its own process group: children it started (PyTriton's
        # tritonserver, a build step) must not outlive it, even when it was SIGKILLed.
        return self.launched.stop(timeout_s=20) if self.launched is not None else None
