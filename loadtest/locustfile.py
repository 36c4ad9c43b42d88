"""Locust users for the served classifier: Open Inference Protocol v2 and vLLM's classify API.

Plain Locust is enough — ``--host`` is the only thing to give (docs/loadtest.md)::

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                  # web UI :8089
    locust -f loadtest/locustfile.py --headless -u 4 -r 4 -t 30s --host http://127.0.0.1:8000
    locust -f loadtest/locustfile.py --help                                         # options

At each test start the master (or the single local process) asks the server what it serves
(:func:`loadtest.live.resolve_target`: engine, variant, protocol), sends the **held-out test
split** of that variant (``<artifacts>/<variant>/model/split.json``) unless ``--requests-file``
says otherwise, and writes everything under ``<results>/locust/<engine>__<variant>/<run_id>/``
(``--results-dir`` is the results root; :meth:`study.paths.Paths.locust_run`):
``requests-<phase>-<pid>.csv`` from every process (workers included), ``requests.jsonl`` (what
was sent), ``meta.json`` and, at the end, ``energy.csv``. The options (``--requests-file``,
``--protocol``, ``--model``, ``--batch``, ``--rps``, ``--pool``, ``--request-timeout``, …, see
:data:`loadtest.live.OPTIONS`) are Locust options: in ``--help``, in the web UI's start form,
in a ``locust.conf``, and settable by their ``LOADTEST_*`` environment variables. Workers get
them, and the run's id and paths, from the master with every spawn message.

The web UI gets an **Energy** tab (Locust's extension mechanism: ``extended_tabs`` /
``extended_tables`` in the template arguments, the rows in ``extended_stats`` of
``/stats/requests``) with live power, energy so far, Wh per 1k requests since the test started
(gross, server-attributed where the trace has the server's series) and served accuracy, each with
its meter and kind; ``GET /energy`` returns the same as JSON, ``/energy/csv`` as CSV, and the
figures are added to ``--csv`` (``<prefix>_energy.csv``) and to the HTML report (``--html`` and
the web UI's *Download Report*). Power comes from a sidecar's CSV (``--power-csv``; ``make
locust`` starts one) or from a sidecar this process starts itself (``--meter``, default ``auto``;
``--meter off`` for none).

Every response is checked (HTTP status, schema, one label per input) and its predicted label
compared with the true one. Each request becomes one row of the per-process CSV
(:data:`loadtest.records.RECORD_COLUMNS`) with this machine's wall-clock send/complete times, so
the orchestrator can cut windows exactly and compute served F1. A failed request is a row with
its error, never an exception that stops the user.

Load models (docs/loadtest.md): *closed loop* — each user sends its next request as soon as the
previous one is answered (``wait_time`` 0; after a 503 it first waits the ``Retry-After`` the
server gave, at most :data:`loadtest.protocols.MAX_RETRY_AFTER_S`); *open loop* — the total
rate ``--rps`` is split over ``--pool`` users (default: all users), each following its own
Poisson schedule of **absolute** target times (a superposition of independent Poisson processes
is Poisson at the summed rate).
A user that is still busy when its next target passes sends immediately and keeps the schedule,
so a slow server does not lower the offered rate (coordinated omission is bounded by the pool
size); each row carries its target time so lateness and latency-from-intended are reported.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# `locust -f loadtest/locustfile.py` from anywhere: the repository's packages importable here
# (appended: Locust drops sys.path[0] after importing the locustfile) and in the power sidecar.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.append(_REPO)
if _REPO not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p)

import gevent  # noqa: E402
from locust import events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

from loadtest import energy_tab, live  # noqa: E402
from loadtest.protocols import (  # noqa: E402
    PREDICT_FN,
    error_reason,
    oip_request,
    retry_after_s,
    vllm_request,
)
from loadtest.records import RecordWriter  # noqa: E402

log = logging.getLogger("loadtest")
RUN_KEY = "gps_run"  # the run's resolved settings, carried to workers in parsed_options


class State:
    """This process's current run: settings, requests, record writer, served tally, energy."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.role = "local"  # local | master | worker
        self.run: dict[str, Any] = {}
        self.preflight: dict[str, Any] | None = None  # prepared at start-up (headless + --host)
        self.items: list[tuple[str, int, str]] = []
        self.items_key: tuple | None = None
        self.writer = RecordWriter(None, None)
        self.tally = live.ServedTally()  # this process (a worker's: since its last report)
        self.total = live.ServedTally()  # master: every worker's, merged from their reports
        self.energy: energy_tab.EnergyView | None = None
        self.sidecar: Any = None
        self.targets: dict[tuple, live.Target] = {}
        self.splits: dict[tuple, dict[str, Any]] = {}

    @property
    def served(self) -> live.ServedTally:
        """The whole test's tally: merged from the workers on a master, else this process's."""
        return self.total if self.role == "master" else self.tally

    def load_items(self) -> None:
        """The run's requests: the JSONL the master wrote or was given; a worker that cannot
        read that path (another machine) derives the same held-out split itself."""
        key = (self.run.get("requests_file"), self.run.get("variant"))
        if key == self.items_key and self.items:
            return
        path = self.run["requests_file"]
        if not Path(path).exists() and self.run.get("from_split"):
            settings = live.Settings(artifacts_dir=self.run.get("artifacts_dir") or "",
                                     data=self.run.get("data") or "")
            path = str(Path(self.run["records_dir"]) / f"requests-{os.getpid()}.jsonl")
            live.held_out_requests(settings, self.run["variant"], Path(path),
                                   model_dir=self.run.get("model_dir"))
        self.items = live.load_items(path)
        self.items_key = key


STATE = State()
atexit.register(lambda: STATE.writer.close())
_USER_IDS = itertools.count()


def _flusher() -> None:
    while True:
        gevent.sleep(0.5)
        STATE.writer.flush()


def _fail(environment, message: str) -> None:
    """One clear line, and the test stops (a bad option or an unreachable server)."""
    log.error("loadtest: %s", message)
    environment.process_exit_code = 2
    runner = environment.runner
    if runner is not None:
        headless = getattr(environment.parsed_options, "headless", False)
        gevent.spawn_later(0, runner.quit if headless else runner.stop)


def prepare_run(environment) -> dict[str, Any]:
    """Resolve this test's settings on the master/local process: what the server serves, the
    request file, the run directory. Returns the dict workers receive (``parsed_options``)."""
    opts = environment.parsed_options
    s = live.settings_from(opts)
    host = (environment.host or getattr(opts, "host", "") or "").rstrip("/")
    if not host:
        raise ValueError("--host is not set: give the server's URL, e.g. --host http://127.0.0.1:8000")
    key = (host, s.protocol, s.model, s.variant, bool(s.requests_file and s.records_dir))
    if key not in STATE.targets:
        if s.requests_file and s.records_dir and s.protocol != "auto":
            # The orchestrator: it gives everything and keeps its own account of the run.
            STATE.targets[key] = live.Target(host, s.protocol, s.model, None, s.variant or None,
                                             how="options")
        else:
            STATE.targets[key] = live.resolve_target(host, s)
    target = STATE.targets[key]
    if not s.requests_file and not target.variant:
        raise ValueError(f"{host} does not say which variant it serves ({target.engine}); "
                         "give --variant (e.g. --variant v0) or --requests-file")
    started = time.time()
    run_id = s.run_id or live.utc_run_id(started)
    run_dir: Path | None = None
    if s.records_dir:
        records_dir = Path(s.records_dir)
    else:
        run_dir = live.paths(s).locust_run(target.engine or "unknown", target.variant or "unknown", run_id)
        base = run_dir.parent
        for k in itertools.count(2):  # two tests started within one second get two directories
            if s.run_id or not run_dir.exists():
                break
            run_dir = base / f"{run_id}-{k}"
        run_id = run_dir.name
        records_dir = run_dir
    records_dir.mkdir(parents=True, exist_ok=True)
    requests_file, split = s.requests_file, None
    if not requests_file:
        out = (run_dir or records_dir) / "requests.jsonl"
        skey = (str(target.variant), target.model_dir, s.artifacts_dir, s.data)
        cached = STATE.splits.get(skey)
        if cached and Path(cached["file"]).is_file():
            # The next test of the same session: the same split, without pandas again.
            if Path(cached["file"]).resolve() != out.resolve():
                shutil.copyfile(cached["file"], out)
            split = {**cached, "file": str(out)}
        else:
            split = live.held_out_requests(s, str(target.variant), out, model_dir=target.model_dir)
            STATE.splits[skey] = split
        requests_file = split["file"]
    live.load_items(requests_file)  # a clear error now, not in every user
    n_users = int(getattr(opts, "num_users", None) or 1)
    run = {
        "run_id": run_id, "host": host, "engine": target.engine, "variant": target.variant,
        "format": target.format, "protocol": target.protocol, "model": s.model,
        "resolved_by": target.how, "requests_file": str(Path(requests_file).resolve()),
        "from_split": split is not None, "split": split, "records_dir": str(records_dir.resolve()),
        "run_dir": str(run_dir.resolve()) if run_dir else None, "phase": s.phase,
        "batch": s.batch, "rps": s.rps, "pool": (s.pool or n_users) if s.rps else None,
        "request_timeout": s.request_timeout, "seed": s.seed, "artifacts_dir": s.artifacts_dir,
        "model_dir": target.model_dir, "data": s.data, "users": n_users, "started_unix_s": started,
    }
    _write_meta(run)
    return run


def _write_meta(run: dict[str, Any]) -> None:
    if run.get("run_dir"):
        from study.io import write_json_atomic

        write_json_atomic(Path(run["run_dir"]) / "meta.json", run)


def apply_run(run: dict[str, Any]) -> None:
    """Make ``run`` this process's current run (every process, before its users start)."""
    STATE.run = run
    STATE.writer.close()
    STATE.writer = RecordWriter(run["records_dir"], run["phase"])
    LoadUser.network_timeout = LoadUser.connection_timeout = float(run["request_timeout"])
    STATE.load_items()


# --------------------------------------------------------------------------- Locust hooks


@events.init_command_line_parser.add_listener
def _add_options(parser, **_kw) -> None:
    live.add_options(parser)


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    from locust.runners import MasterRunner, WorkerRunner

    STATE.environment = environment
    runner = environment.runner
    STATE.role = ("worker" if isinstance(runner, WorkerRunner)
                  else "master" if isinstance(runner, MasterRunner) else "local")
    opts = environment.parsed_options
    if opts is None:  # a library user building an Environment by hand
        return
    try:
        s = live.settings_from(opts)
    except ValueError as e:
        print(f"loadtest: {e}", file=sys.stderr)
        sys.exit(2)
    if STATE.role != "master":
        gevent.spawn(_flusher)
    if STATE.role == "worker":
        return  # settings, paths and requests arrive from the master with the first spawn
    if getattr(opts, "headless", False) and (environment.host or getattr(opts, "host", None)):
        # Fail at start-up, not at the first request, when the server or the data is unusable.
        try:
            STATE.preflight = prepare_run(environment)
        except (ValueError, OSError) as e:
            print(f"loadtest: {e}", file=sys.stderr)
            sys.exit(2)
    _start_energy(s)
    if environment.web_ui is not None:
        energy_tab.extend_web_ui(environment, energy_snapshot)


def _start_energy(s: live.Settings) -> None:
    if s.power_csv:
        STATE.energy = energy_tab.EnergyView(s.power_csv, server_pid=s.server_pid)
        return
    if s.meter.lower() in ("off", "none"):
        STATE.energy = energy_tab.EnergyView(None, meter_note="--meter off")
        return
    from energy.sidecar import Sidecar

    out = live.paths(s).power / f"{live.utc_run_id()}-{os.getpid()}.csv"
    try:
        STATE.sidecar = Sidecar(out, interval_s=0.5, meter=s.meter,
                                pids=(s.server_pid,) if s.server_pid else ())
    except (RuntimeError, TimeoutError, OSError) as e:
        log.warning("loadtest: no energy figures: the power sidecar did not start (%s)", e)
        STATE.energy = energy_tab.EnergyView(None, meter_note=f"the power sidecar did not start: {e}")
        return
    atexit.register(STATE.sidecar.stop)
    STATE.energy = energy_tab.EnergyView(out, server_pid=s.server_pid)


@events.test_start.add_listener
def _on_test_start(environment, **_kw) -> None:
    opts = environment.parsed_options
    STATE.tally = live.ServedTally()
    STATE.total = live.ServedTally()
    if STATE.role == "worker":
        run = getattr(opts, RUN_KEY, None)
        if not run:
            log.error("loadtest: the master sent no run settings (is it running this locustfile?)")
            return
        try:
            apply_run(dict(run))
        except (ValueError, OSError) as e:
            log.error("loadtest: %s", e)
        return
    try:
        run, STATE.preflight = (STATE.preflight or prepare_run(environment)), None
        run["started_unix_s"] = time.time()  # the test starts now, not at the start-up check
        run["power_csv"] = str(STATE.energy.power_csv) if STATE.energy and STATE.energy.power_csv else None
        _write_meta(run)
        apply_run(run)
    except (ValueError, OSError) as e:
        _fail(environment, str(e))
        return
    setattr(opts, RUN_KEY, run)  # sent to every worker with its spawn message
    if STATE.energy is not None:
        STATE.energy.start(run["started_unix_s"])
    log.info("loadtest: %s/%s (%s, %s), %d requests from %s → %s", run["engine"], run["variant"],
             run["protocol"], run["resolved_by"], len(STATE.items), run["requests_file"],
             run["records_dir"])


@events.spawning_complete.add_listener
def _on_spawning_complete(**_kw) -> None:
    # Every user, its connection and Locust's own state are long-lived: freeze them out of the
    # collector. Otherwise each full collection walks them all (~40-60 ms with a 1,000-user
    # pool, ~30 times a minute at 1,240 req/s) and every request in flight meanwhile looks
    # that much slower: the client's own pauses in the server's p99.
    gc.collect()
    gc.freeze()


@events.report_to_master.add_listener
def _on_report_to_master(data, **_kw) -> None:
    data["gps_tally"] = STATE.tally.take()


@events.worker_report.add_listener
def _on_worker_report(data, **_kw) -> None:
    if "gps_tally" in data:
        STATE.total.merge(data["gps_tally"])


def energy_snapshot() -> dict[str, Any]:
    """The Energy tab's data (what ``GET /energy`` returns)."""
    if STATE.energy is None:
        STATE.energy = energy_tab.EnergyView(None, meter_note="not started")
    run = STATE.run or {}
    return STATE.energy.snapshot(
        STATE.served, run_id=run.get("run_id"), engine=run.get("engine"),
        variant=run.get("variant"), run_dir=run.get("run_dir") or run.get("records_dir"))


def _write_energy_files(environment) -> None:
    """``energy.csv`` + ``energy.json`` in the run directory and ``<--csv prefix>_energy.csv``."""
    if STATE.role == "worker" or STATE.energy is None or not STATE.run:
        return
    from study.io import write_json_atomic, write_text_atomic

    snap = energy_snapshot()
    text = energy_tab.figures_csv(snap["figures"])
    if STATE.run.get("run_dir"):
        write_text_atomic(Path(STATE.run["run_dir"]) / "energy.csv", text)
        write_json_atomic(Path(STATE.run["run_dir"]) / "energy.json", snap)
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        write_text_atomic(f"{prefix}_energy.csv", text)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kw) -> None:
    STATE.writer.flush()
    _write_energy_files(environment)


@events.quitting.add_listener
def _on_quitting(environment, **_kw) -> None:
    STATE.writer.close()
    _write_energy_files(environment)  # again: the workers' last reports have arrived by now


@events.quit.add_listener
def _on_quit(**_kw) -> None:
    env = STATE.environment
    html_file = getattr(getattr(env, "parsed_options", None), "html_file", None)
    if STATE.role != "worker" and html_file and Path(html_file).exists() and STATE.run:
        # Locust writes the --html report before it fires `quit`: add the Energy section.
        from study.io import write_text_atomic

        report = Path(html_file).read_text(encoding="utf-8")
        write_text_atomic(html_file, energy_tab.inject_html(report, energy_snapshot()["figures"]))
    if STATE.sidecar is not None:
        STATE.sidecar.stop()


# --------------------------------------------------------------------------- protocols

REQUEST_FN = {"oip": oip_request, "vllm": vllm_request}


# --------------------------------------------------------------------------- the user


class LoadUser(FastHttpUser):
    """One client of the served model (closed loop, or one stream of the open-loop pool)."""

    network_timeout = 60.0
    connection_timeout = 60.0
    max_retries = 0  # a retry would be a second request the server counts and we do not

    def on_start(self) -> None:
        run = STATE.run
        uid = next(_USER_IDS)
        # Seeded by the worker's index (0 when local), not its pid, so --seed reproduces the
        # request order and arrival schedule of every user from run to run.
        worker = max(0, getattr(self.environment.runner, "worker_index", 0))
        self._rng = random.Random(f"{run.get('seed', 0)}-{worker}-{uid}")
        self._protocol = run.get("protocol", "oip")
        self._model = run.get("model", live.DEFAULT_MODEL)
        self._batch = int(run.get("batch", 1))
        self._cursor = self._rng.randrange(len(STATE.items)) if STATE.items else 0
        self._target: float | None = None
        self._pause = 0.0  # closed loop: the last 503's Retry-After, waited before the next request
        if run.get("rps"):
            self._rate = float(run["rps"]) / int(run.get("pool") or 1)  # req/s of this stream
            self._target = time.time() + self._rng.expovariate(self._rate)
            gevent.sleep(max(0.0, self._target - time.time()))

    def wait_time(self) -> float:
        if self._target is None:
            # Closed loop: no think time, except after a 503 that said when to retry (admission
            # by deadline): a well-behaved client waits that long instead of spinning on 503s.
            pause, self._pause = self._pause, 0.0
            return pause
        # Next absolute target on this stream's Poisson schedule; never reset to "now", so a
        # late request does not push every later arrival back (coordinated omission).
        self._target += self._rng.expovariate(self._rate)
        return max(0.0, self._target - time.time())

    def _next_batch(self) -> list[tuple[str, int, str]]:
        data = STATE.items
        out = [data[(self._cursor + i) % len(data)] for i in range(self._batch)]
        self._cursor = (self._cursor + self._batch) % len(data)
        return out

    @task
    def infer(self) -> None:
        if not STATE.items:
            gevent.sleep(0.5)  # the run could not be prepared; the error is in the log
            return
        batch = self._next_batch()
        texts = [t for t, _, _ in batch]
        true = [y for _, y, _ in batch]
        path, body = REQUEST_FN[self._protocol](texts, self._model)
        target = self._target
        pred: list[int] = []
        scores: list[float] | None = None
        error = ""
        t_start = time.time()
        try:
            with self.client.post(
                path, data=body, headers={"Content-Type": "application/json"},
                catch_response=True, name=f"{self._protocol}:infer",
            ) as resp:
                t_end = time.time()
                if resp.status_code != 200:
                    error = error_reason(resp)
                    if resp.status_code == 503 and target is None:
                        self._pause = retry_after_s(resp.headers.get("retry-after"))
                else:
                    try:
                        pred, scores = PREDICT_FN[self._protocol](resp.json(), len(texts))
                    except (ValueError, TypeError) as e:
                        msg = str(e)
                        error = msg if msg.startswith("schema") else "schema: body is not JSON"
                if error:
                    resp.failure(error)
                else:
                    resp.success()
        except Exception as e:  # never let one request stop the user or the run
            t_end = time.time()
            error = f"client: {type(e).__name__}"
        STATE.writer.write([
            f"{t_start:.6f}",
            f"{t_end:.6f}",
            f"{(t_end - t_start) * 1000.0:.3f}",
            "0" if error else "1",
            error,
            str(len(texts)),
            " ".join(map(str, true)),
            " ".join(map(str, pred)),
            "" if target is None else f"{target:.6f}",
            "" if not scores else " ".join(f"{x:.6g}" for x in scores),
            " ".join(p or "-" for _, _, p in batch),
        ])
        STATE.tally.add(not error, true, pred)
