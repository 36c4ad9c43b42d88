"""Locust users for the served classifier: Open Inference Protocol v2 and vLLM's classify API.

Run by :mod:`loadtest.run` (``locust -f loadtest/locustfile.py …``); configured by environment
variables so that master and workers read the same settings without importing pandas or the
training package:

==========================  ===============================================================
``LOADTEST_REQUESTS``       JSONL file, one ``{"text": …, "label": 0|1}`` per line (written once
                            by the orchestrator from the real BigVul test split) — required
``LOADTEST_RECORDS_DIR``    where each process writes ``requests-<phase>-<pid>.csv`` (required)
``LOADTEST_PHASE``          file-name tag, e.g. ``warmup`` / ``steady`` (default ``run``)
``LOADTEST_PROTOCOL``       ``oip`` (default) or ``vllm``
``LOADTEST_MODEL``          served model name (default ``bigvul-modernbert``)
``LOADTEST_BATCH``          functions per request (default 1)
``LOADTEST_RPS``            open loop: total target arrival rate (req/s); unset = closed loop
``LOADTEST_POOL``           open loop: number of users the rate is split over (total, all workers)
``LOADTEST_TIMEOUT_S``      per-request network timeout (default 60)
``LOADTEST_SEED``           seed of the request order and arrival schedule (default 0)
==========================  ===============================================================

Every response is checked (HTTP status, schema, one label per input) and its predicted label
compared with the true one. Each request becomes one row of the per-process CSV
(:data:`loadtest.summary.RECORD_COLUMNS`) with this machine's wall-clock send/complete times, so
the orchestrator can cut windows exactly and compute served F1. A failed request is a row with
its error, never an exception that stops the user.

Load models (docs/loadtest.md): *closed loop* — each user sends its next request as soon as the
previous one is answered (``wait_time`` 0); *open loop* — the total rate ``LOADTEST_RPS`` is
split over ``LOADTEST_POOL`` users, each following its own Poisson schedule of **absolute**
target times (a superposition of independent Poisson processes is Poisson at the summed rate).
A user that is still busy when its next target passes sends immediately and keeps the schedule,
so a slow server does not lower the offered rate (coordinated omission is bounded by the pool
size); each row carries its target time so lateness and latency-from-intended are reported.
"""

from __future__ import annotations

import atexit
import csv
import itertools
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser

from loadtest.protocols import PREDICT_FN, PROTOCOLS, oip_request, vllm_request
from loadtest.summary import RECORD_COLUMNS


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _env_num(name: str, cast: type, default: Any, minimum: float) -> Any:
    raw = _env(name)
    if raw is None:
        return default
    try:
        v = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is invalid; allowed: a number >= {minimum}") from None
    if v < minimum:
        raise ValueError(f"{name}={raw!r} is invalid; allowed: a number >= {minimum}")
    return v


PROTOCOL = (_env("LOADTEST_PROTOCOL", "oip") or "oip").lower()
if PROTOCOL not in PROTOCOLS:
    raise ValueError(f"LOADTEST_PROTOCOL={PROTOCOL!r} is invalid; allowed: {', '.join(PROTOCOLS)}")
MODEL = _env("LOADTEST_MODEL", "bigvul-modernbert")
BATCH = _env_num("LOADTEST_BATCH", int, 1, 1)
RPS = _env_num("LOADTEST_RPS", float, None, 1e-9)
POOL = _env_num("LOADTEST_POOL", int, 1, 1)
TIMEOUT_S = _env_num("LOADTEST_TIMEOUT_S", float, 60.0, 0.001)
SEED = _env_num("LOADTEST_SEED", int, 0, 0)
PHASE = _env("LOADTEST_PHASE", "run")


def load_items(path: str | None) -> list[tuple[str, int, str]]:
    """``[(text, label, pair), …]`` from the orchestrator's JSONL file (a clear error if
    unusable); ``pair`` is the vulnerable/fix pair id, ``""`` when the file has none."""
    if not path:
        raise RuntimeError(
            "LOADTEST_REQUESTS is not set: run the load test through `python -m loadtest.run`, "
            "which writes requests.jsonl from the test split"
        )
    items: list[tuple[str, int, str]] = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                items.append((str(d["text"]), int(d["label"]), str(d.get("pair") or "")))
            except (ValueError, KeyError) as e:
                raise ValueError(f"{path}:{i}: need {{'text': str, 'label': 0|1}} ({e})") from e
    if not items:
        raise ValueError(f"{path}: no requests in the file")
    return items


class RecordWriter:
    """This process's per-request CSV: opened on the first record, flushed twice a second (so
    the orchestrator can follow progress and a killed process loses little), closed at exit."""

    def __init__(self, directory: str | None, phase: str | None) -> None:
        self.path = (
            Path(directory) / f"requests-{phase}-{os.getpid()}.csv" if directory else None
        )
        self._fh = None
        self._w: Any = None
        self._lock = threading.Lock()
        self.n = 0

    def write(self, row: list[str]) -> None:
        if self.path is None:
            return
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
                self._w = csv.writer(self._fh)
                self._w.writerow(RECORD_COLUMNS)
            self._w.writerow(row)
            self.n += 1

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None and not self._fh.closed:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None and not self._fh.closed:
                self._fh.flush()
                self._fh.close()


WRITER = RecordWriter(_env("LOADTEST_RECORDS_DIR"), PHASE)
atexit.register(WRITER.close)
_ITEMS: list[tuple[str, int, str]] | None = None
_USER_IDS = itertools.count()


def items() -> list[tuple[str, int, str]]:
    global _ITEMS
    if _ITEMS is None:
        _ITEMS = load_items(_env("LOADTEST_REQUESTS"))
    return _ITEMS


def _flusher() -> None:
    while True:
        gevent.sleep(0.5)
        WRITER.flush()


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    from locust.runners import MasterRunner

    if not isinstance(environment.runner, MasterRunner):
        items()  # fail at start-up, not in the first request, when the data is unusable
        gevent.spawn(_flusher)


@events.test_stop.add_listener
def _on_test_stop(**_kw) -> None:
    WRITER.flush()


@events.quitting.add_listener
def _on_quitting(**_kw) -> None:
    WRITER.close()


# --------------------------------------------------------------------------- protocols

REQUEST_FN = {"oip": oip_request, "vllm": vllm_request}


def _error_reason(resp: Any) -> str:
    """A short, countable reason for a failed response (no addresses or timestamps in it)."""
    err = getattr(resp, "error", None)
    if err is not None and not getattr(resp, "status_code", 0):
        name = type(err).__name__
        if "timeout" in name.lower() or "timeout" in str(err).lower():
            return "timeout"
        return f"connection: {name}"
    return f"http {resp.status_code}"


# --------------------------------------------------------------------------- the user


class LoadUser(FastHttpUser):
    """One client of the served model (closed loop, or one stream of the open-loop pool)."""

    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    max_retries = 0  # a retry would be a second request the server counts and we do not

    def on_start(self) -> None:
        uid = next(_USER_IDS)
        # Seeded by the worker's index (0 when local), not its pid, so --seed reproduces the
        # request order and arrival schedule of every user from run to run.
        worker = getattr(self.environment.runner, "worker_index", 0)
        self._rng = random.Random(f"{SEED}-{worker}-{uid}")
        data = items()
        self._cursor = self._rng.randrange(len(data))
        self._target: float | None = None
        if RPS is not None:
            self._rate = RPS / POOL  # req/s of this stream
            self._target = time.time() + self._rng.expovariate(self._rate)
            gevent.sleep(max(0.0, self._target - time.time()))

    def wait_time(self) -> float:
        if self._target is None:
            return 0.0  # closed loop: no think time
        # Next absolute target on this stream's Poisson schedule; never reset to "now", so a
        # late request does not push every later arrival back (coordinated omission).
        self._target += self._rng.expovariate(self._rate)
        return max(0.0, self._target - time.time())

    def _next_batch(self) -> list[tuple[str, int, str]]:
        data = items()
        out = [data[(self._cursor + i) % len(data)] for i in range(BATCH)]
        self._cursor = (self._cursor + BATCH) % len(data)
        return out

    @task
    def infer(self) -> None:
        batch = self._next_batch()
        texts = [t for t, _, _ in batch]
        true = [y for _, y, _ in batch]
        path, body = REQUEST_FN[PROTOCOL](texts, MODEL)
        target = self._target
        pred: list[int] = []
        scores: list[float] | None = None
        error = ""
        t_start = time.time()
        try:
            with self.client.post(
                path, data=body, headers={"Content-Type": "application/json"},
                catch_response=True, name=f"{PROTOCOL}:infer",
            ) as resp:
                t_end = time.time()
                if resp.status_code != 200:
                    error = _error_reason(resp)
                else:
                    try:
                        pred, scores = PREDICT_FN[PROTOCOL](resp.json(), len(texts))
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
        WRITER.write([
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
