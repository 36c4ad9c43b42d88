"""The power CSV written by :mod:`energy.sidecar` (and optionally by a meter session), its marks,
and turning it into an :class:`~energy.base.EnergyRecord` with the shared integration code.

Format (one header line, then one row per device per sample)::

    t_unix_s,device,power_w,energy_j,source,kind,flag
    1732590000.100000,gpu0,212.5,123456.789,nvml-counter,measured,
    1732590000.100000,cpu,3.1,17.2,estimate,estimated,
    1732590000.200000,gpu0,,,nvml-counter,measured,gap

``power_w``/``energy_j`` are empty when the meter has no such value (or the read failed);
``energy_j`` is a cumulative counter. ``flag`` is ``""``, ``gap``, ``reset`` or ``wrap``.

Marks live beside the trace in ``<stem>.marks.csv`` (``power.csv`` → ``power.marks.csv``) with
columns ``t_unix_s,name``; :func:`read_marks` finds them from the power CSV's path. The sidecar
describes its meters (spec, sources, GPU UUIDs and names) in ``<stem>.meters.json``;
:func:`record_from_csv` copies that into each record's ``meter``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from energy.base import EnergyRecord, Reading
from energy.integrate import window_record

log = logging.getLogger(__name__)

COLUMNS = ("t_unix_s", "device", "power_w", "energy_j", "source", "kind", "flag")
MARK_COLUMNS = ("t_unix_s", "name")


def marks_path(power_csv: str | os.PathLike[str]) -> Path:
    """Where the marks of ``power_csv`` are stored: ``<dir>/<stem>.marks.csv``."""
    p = Path(power_csv)
    return p.with_name(p.stem + ".marks.csv")


def meters_path(power_csv: str | os.PathLike[str]) -> Path:
    """Where the sidecar describes the meters of ``power_csv``: ``<dir>/<stem>.meters.json``."""
    p = Path(power_csv)
    return p.with_name(p.stem + ".meters.json")


def read_meters_description(power_csv: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"spec", "meters": [describe(), …]}`` written by the sidecar beside ``power_csv``, or ``{}``."""
    mp = meters_path(power_csv)
    try:
        d = json.loads(mp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable meter description (%s)", mp, e)
        return {}
    return d if isinstance(d, dict) else {}


def _fmt(x: float | None, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def format_row(r: Reading) -> list[str]:
    """One CSV row (list of strings, in :data:`COLUMNS` order) for a reading."""
    return [
        f"{r.t_unix_s:.6f}",
        r.device,
        _fmt(r.power_w, 4),
        _fmt(r.energy_j, 6),
        r.source,
        r.kind,
        r.flag,
    ]


class TraceWriter:
    """Appends readings to a power CSV, writing the header when the file is new/empty.

    Every :meth:`write` ends with a flush (and ``os.fsync`` when ``fsync=True``) so a killed
    writer loses at most the batch being written; readers skip a torn last line.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh: IO[str] = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._fh)
        self._fsync = fsync
        if new:
            self._w.writerow(COLUMNS)
            self._flush()

    def _flush(self) -> None:
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def write(self, readings: Iterable[Reading]) -> int:
        """Append a batch of readings and flush; returns the number of rows written."""
        n = 0
        for r in readings:
            self._w.writerow(format_row(r))
            n += 1
        self._flush()
        return n

    def close(self) -> None:
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _opt_float(s: str) -> float | None:
    if s == "":
        return None
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {s!r}")
    return v


def read_readings(path: str | os.PathLike[str]) -> list[Reading]:
    """All readings of a power CSV, in file order.

    Malformed rows (a torn last line after SIGKILL, a stray header after an append) are
    skipped with one warning that counts them; a missing header or file raises.
    """
    p = Path(path)
    out: list[Reading] = []
    bad = 0
    with open(p, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None or tuple(header) != COLUMNS:
            raise ValueError(
                f"{p}: not a power CSV (header {header!r}, expected {','.join(COLUMNS)})"
            )
        for row in rows:
            if len(row) != len(COLUMNS):
                bad += 1
                continue
            try:
                out.append(
                    Reading(
                        t_unix_s=float(row[0]),
                        device=row[1],
                        power_w=_opt_float(row[2]),
                        energy_j=_opt_float(row[3]),
                        source=row[4],
                        kind=row[5],
                        flag=row[6],
                    )
                )
            except ValueError:
                bad += 1
    if bad:
        log.warning("%s: skipped %d malformed row(s) (torn write or stray header)", p, bad)
    return out


def read_marks(power_csv: str | os.PathLike[str]) -> list[tuple[str, float]]:
    """Marks sent to the sidecar that wrote ``power_csv``: ``[(name, t_unix_s), …]`` by time.

    Reads ``<stem>.marks.csv`` beside the trace; no marks file → ``[]``.
    """
    mp = marks_path(power_csv)
    if not mp.exists():
        return []
    marks: list[tuple[str, float]] = []
    with open(mp, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        next(rows, None)
        for row in rows:
            if len(row) != 2:
                continue
            try:
                marks.append((row[1], float(row[0])))
            except ValueError:
                continue
    marks.sort(key=lambda m: m[1])
    return marks


def mark_time(power_csv: str | os.PathLike[str], name: str) -> float:
    """Time of the (last) mark called ``name``; raises ``KeyError`` listing the known marks."""
    found = [t for n, t in read_marks(power_csv) if n == name]
    if not found:
        known = sorted({n for n, _ in read_marks(power_csv)})
        raise KeyError(f"mark {name!r} not in {marks_path(power_csv)}; known marks: {known}")
    return found[-1]


def record_from_readings(
    readings: Iterable[Reading],
    start_unix_s: float,
    end_unix_s: float,
    *,
    name: str = "window",
    idle_w: float | None = None,
    idle_w_per_device: dict[str, float] | None = None,
    meter: dict[str, Any] | None = None,
) -> EnergyRecord:
    """Same as :func:`record_from_csv` for readings already in memory."""
    readings = list(readings)
    devices = {
        r.device: {"source": r.source, "kind": r.kind} for r in readings if r.flag != "gap"
    }
    m = {"devices": devices, **(meter or {})}
    return window_record(readings, start_unix_s, end_unix_s, name=name, idle_w=idle_w,
                         idle_w_per_device=idle_w_per_device, meter=m)


def record_from_csv(
    power_csv: str | os.PathLike[str],
    start_unix_s: float | str,
    end_unix_s: float | str,
    name: str = "window",
    idle_w: float | None = None,
    idle_w_per_device: dict[str, float] | None = None,
) -> EnergyRecord:
    """Energy of ``[start_unix_s, end_unix_s]`` in a sidecar power CSV.

    ``start_unix_s``/``end_unix_s`` are Unix seconds, or mark names (the last mark of that
    name). ``idle_w`` (W), or better ``idle_w_per_device``, gives ``net_j`` (over covered time,
    see :func:`energy.integrate.window_record`). Uses the same integration as in-process windows.
    """
    t0 = mark_time(power_csv, start_unix_s) if isinstance(start_unix_s, str) else float(start_unix_s)
    t1 = mark_time(power_csv, end_unix_s) if isinstance(end_unix_s, str) else float(end_unix_s)
    return record_from_readings(
        read_readings(power_csv), t0, t1, name=name, idle_w=idle_w,
        idle_w_per_device=idle_w_per_device, meter={"trace": str(power_csv), **read_meters_description(power_csv)}
    )


def idle_w_from_csv(power_csv: str | os.PathLike[str], start_unix_s: float, end_unix_s: float) -> float | None:
    """Mean power (W) of the machine-level devices over ``[start, end]`` — an idle baseline."""
    rec = record_from_csv(power_csv, start_unix_s, end_unix_s, name="idle")
    if rec.gross_j is None or rec.duration_s <= 0:
        return None
    return rec.gross_j / rec.duration_s
