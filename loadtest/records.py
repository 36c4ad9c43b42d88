"""The per-request records of a load test: one CSV row per request, written by every Locust
process (:class:`RecordWriter`, used by loadtest/locustfile.py) and read back by the orchestrator
(:func:`read_request_records`) to cut windows exactly and score served accuracy.

Plain Python (no Locust, no pandas): the locustfile imports it after gevent's monkey-patching.
"""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per-request CSV written by every Locust process (loadtest/locustfile.py).
RECORD_COLUMNS = (
    "t_start_unix_s",  # when the request was sent
    "t_end_unix_s",  # when its response (or error) was complete
    "latency_ms",
    "ok",  # 1/0: status 200 and a well-formed response
    "error",  # short reason when ok == 0 ("" otherwise)
    "n_items",  # functions in the request (batch size)
    "true",  # true labels, space-separated
    "pred",  # predicted labels, space-separated ("" when the response had none)
    "target_unix_s",  # open loop: the scheduled arrival time ("" for closed loop)
    "score",  # positive-class scores (logit₁ − logit₀), space-separated ("" when none)
    "pair",  # vulnerable/fix pair ids of the items, space-separated ("-" for an unpaired item)
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the load client saw it (times in Unix seconds, this machine's clock)."""

    t_start_unix_s: float
    t_end_unix_s: float
    ok: bool
    error: str = ""
    n_items: int = 1
    true: tuple[int, ...] = ()
    pred: tuple[int, ...] = ()
    target_unix_s: float | None = None
    scores: tuple[float, ...] = ()
    pairs: tuple[str, ...] = ()

    @property
    def latency_ms(self) -> float:
        return (self.t_end_unix_s - self.t_start_unix_s) * 1000.0

    @property
    def lateness_ms(self) -> float | None:
        """Open loop: how long after its scheduled arrival the request was actually sent."""
        if self.target_unix_s is None:
            return None
        return (self.t_start_unix_s - self.target_unix_s) * 1000.0

    @property
    def latency_from_intended_ms(self) -> float | None:
        """Open loop: response time measured from the scheduled arrival (coordinated-omission
        corrected: a request the client sent late still pays for the wait)."""
        if self.target_unix_s is None:
            return None
        return (self.t_end_unix_s - self.target_unix_s) * 1000.0


def _labels(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split()) if s.strip() else ()


def read_request_records(paths: Iterable[str | os.PathLike[str]]) -> list[RequestRecord]:
    """All records of the per-process request CSVs, sorted by completion time.

    A torn last line (a process killed while writing) is skipped, never fatal.
    """
    out: list[RequestRecord] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if any(v is None for v in row.values()):
                    continue  # torn: fewer fields than the header (restval None)
                try:
                    target = row.get("target_unix_s") or ""
                    out.append(
                        RequestRecord(
                            t_start_unix_s=float(row["t_start_unix_s"]),
                            t_end_unix_s=float(row["t_end_unix_s"]),
                            ok=row["ok"] == "1",
                            error=row.get("error") or "",
                            n_items=int(row.get("n_items") or 1),
                            true=_labels(row.get("true") or ""),
                            pred=_labels(row.get("pred") or ""),
                            target_unix_s=float(target) if target else None,
                            scores=tuple(float(x) for x in (row.get("score") or "").split()),
                            pairs=tuple((row.get("pair") or "").split()),
                        )
                    )
                except (KeyError, TypeError, ValueError):
                    continue
    out.sort(key=lambda r: r.t_end_unix_s)
    return out


def write_request_records(path: str | os.PathLike[str], records: Iterable[RequestRecord]) -> Path:
    """Write records in the locustfile's CSV format (used by tests and for merged copies)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(RECORD_COLUMNS)
        for r in records:
            w.writerow(record_row(r))
    return p


def record_row(r: RequestRecord) -> list[str]:
    """One CSV row (in :data:`RECORD_COLUMNS` order) for a record."""
    return [
        f"{r.t_start_unix_s:.6f}",
        f"{r.t_end_unix_s:.6f}",
        f"{r.latency_ms:.3f}",
        "1" if r.ok else "0",
        r.error,
        str(r.n_items),
        " ".join(str(x) for x in r.true),
        " ".join(str(x) for x in r.pred),
        "" if r.target_unix_s is None else f"{r.target_unix_s:.6f}",
        " ".join(f"{x:.6g}" for x in r.scores),
        " ".join(r.pairs),
    ]


def in_window(records: Iterable[RequestRecord], t0: float, t1: float) -> list[RequestRecord]:
    """Records that completed inside ``[t0, t1]``."""
    return [r for r in records if t0 <= r.t_end_unix_s <= t1]


def request_span(records: Sequence[RequestRecord]) -> tuple[float, float] | None:
    """``(first send, last completion)`` of a set of records — the steady window as the load
    client's own timestamps bound it."""
    if not records:
        return None
    return min(r.t_start_unix_s for r in records), max(r.t_end_unix_s for r in records)


class RecordWriter:
    """This process's per-request CSV: opened on the first record, flushed twice a second (so
    the orchestrator can follow progress and a killed process loses little), closed at exit."""

    def __init__(self, directory: str | os.PathLike[str] | None, phase: str | None) -> None:
        self.path = Path(directory) / f"requests-{phase}-{os.getpid()}.csv" if directory else None
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
                self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
                self._w = csv.writer(self._fh)
                if self._fh.tell() == 0:
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
