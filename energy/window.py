"""In-process measurement: a meter session with a background sampler and named windows.

::

    with open_meters(meter="auto", interval_s=0.1) as meters:
        idle_w = meters.measure_idle(seconds=5.0)
        with meters.window("training") as w:
            with meters.window("epoch-1"):          # windows nest and overlap freely
                ...
        w.record.net_j

A session samples every meter every ``interval_s`` on a daemon thread into one shared, in-memory
trace (optionally also appended to a power CSV). A window is only an interval ``[t0, t1]`` over
that trace — each edge also takes a synchronous sample so short windows are clipped precisely —
and its :class:`~energy.base.EnergyRecord` is computed with :mod:`energy.integrate`, the same
code :mod:`energy.trace` uses on sidecar CSVs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from energy.base import EnergyRecord, Meter, Reading, combine_kinds
from energy.config import MeterConfig
from energy.integrate import is_cross_check, window_record

log = logging.getLogger("energy")

# Readings kept before the oldest open window (for edge interpolation); older ones are dropped
# so a long training run does not grow the trace without bound.
_KEEP_BEFORE_S = 30.0


def read_meters(
    meters: Sequence[Meter], error_counts: dict[int, int], clock: Callable[[], float] = time.time
) -> list[Reading]:
    """Read every meter once. A meter that raises is logged (its 1st, then every 100th failure)
    and contributes ``gap`` readings for its devices, so a run goes on and the trace shows
    the hole. ``error_counts`` (meter index → failures) is updated in place."""
    batch: list[Reading] = []
    for i, m in enumerate(meters):
        try:
            batch.extend(m.read())
        except Exception as e:
            n = error_counts.get(i, 0) + 1
            error_counts[i] = n
            if n == 1 or n % 100 == 0:
                log.warning("%s read failed (%d so far): %s: %s",
                            getattr(m, "name", m), n, type(e).__name__, e)
            t = clock()
            devs = m.devices() if hasattr(m, "devices") else [getattr(m, "name", "?")]
            batch.extend(Reading(t, d, None, None, m.source, m.kind, "gap") for d in devs)
    return batch


class Window:
    """A named interval; ``record`` is filled when the ``with`` block ends."""

    def __init__(self, name: str, t0: float) -> None:
        self.name = name
        self.start_unix_s = t0
        self.end_unix_s: float | None = None
        self.record: EnergyRecord | None = None

    def __repr__(self) -> str:
        return f"Window({self.name!r}, start={self.start_unix_s:.3f}, end={self.end_unix_s})"


class MeterSession:
    """Meters + background sampler + named windows + idle baseline.

    ``meters``: started meter objects (see :mod:`energy.registry`). ``interval_s``: sampling
    period (s). ``trace_path``: also append every sample to this power CSV (sidecar format).
    """

    def __init__(
        self,
        meters: Sequence[Meter],
        *,
        interval_s: float = 0.1,
        spec: str = "",
        trace_path: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        if not meters:
            raise ValueError("a meter session needs at least one meter")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0 seconds, got {interval_s}")
        self.meters = list(meters)
        self.interval_s = float(interval_s)
        self.spec = spec
        self.idle_w: float | None = None
        self.records: dict[str, EnergyRecord] = {}
        self.history: list[EnergyRecord] = []
        self._clock = clock
        self._readings: list[Reading] = []
        self._lock = threading.Lock()  # guards _readings / _open
        self._read_lock = threading.Lock()  # meters are not assumed thread-safe
        self._open: list[Window] = []
        self._errors: dict[int, int] = {}
        self._writer = None
        if trace_path is not None:
            from energy.trace import TraceWriter

            self._writer = TraceWriter(trace_path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if start:
            self.start()

    # -- sampling ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background sampler (idempotent)."""
        if self._thread is not None:
            return
        self.sample_now()
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic() + self.interval_s
        n = 0
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self.sample_now()
            n += 1
            if n % 200 == 0:
                self._prune()
            next_t += self.interval_s
            if next_t < time.monotonic():  # fell behind (busy box): skip, don't burst
                next_t = time.monotonic() + self.interval_s

    def sample_now(self) -> list[Reading]:
        """Read every meter once now; a failing meter yields gap readings (logged, not raised)."""
        with self._read_lock:
            batch = read_meters(self.meters, self._errors, self._clock)
            if self._writer is not None and batch:
                try:
                    self._writer.write(batch)
                except (OSError, ValueError) as e:
                    # Disk full, or the file closed under a sampler that outlived close(): the
                    # in-memory trace (what windows use) goes on; the CSV shows the hole.
                    log.warning("write to %s failed: %s", self._writer.path, e)
        with self._lock:
            self._readings.extend(batch)
        return batch

    def readings(self, t0: float | None = None, t1: float | None = None) -> list[Reading]:
        """A copy of the in-memory trace, optionally only samples within ``[t0, t1]``.

        Memory holds what open windows need plus the last ~30 s; pass ``trace_path`` to
        :func:`open_meters` to keep the whole trace on disk."""
        with self._lock:
            rs = list(self._readings)
        if t0 is not None:
            rs = [r for r in rs if r.t_unix_s >= t0]
        if t1 is not None:
            rs = [r for r in rs if r.t_unix_s <= t1]
        return rs

    def _prune(self) -> None:
        with self._lock:
            oldest = min((w.start_unix_s for w in self._open), default=self._clock())
            cut = oldest - _KEEP_BEFORE_S
            if self._readings and self._readings[0].t_unix_s < cut:
                self._readings = [r for r in self._readings if r.t_unix_s >= cut]

    # -- windows ----------------------------------------------------------------------------

    def record_between(self, name: str, t0: float, t1: float, idle_w: float | None = None) -> EnergyRecord:
        """Energy record of ``[t0, t1]`` from the session's trace (no sampling)."""
        margin = max(5.0, 20 * self.interval_s)
        rs = self.readings(t0 - margin, t1 + margin)
        return window_record(
            rs, t0, t1, name=name, idle_w=self.idle_w if idle_w is None else idle_w, meter=self.describe()
        )

    @contextmanager
    def window(self, name: str, *, idle_w: float | None = None) -> Iterator[Window]:
        """Measure the ``with`` block as window ``name``; ``idle_w`` overrides the session's."""
        if self._closed:
            raise RuntimeError("meter session is closed")
        self.sample_now()
        w = Window(name, self._clock())
        with self._lock:
            self._open.append(w)
        failed: BaseException | None = None
        try:
            yield w
        except BaseException as e:
            failed = e
            raise
        finally:
            w.end_unix_s = self._clock()
            try:
                self.sample_now()
                rec = self.record_between(name, w.start_unix_s, w.end_unix_s, idle_w=idle_w)
                if failed is not None:
                    rec.flags.append(f"the measured block raised {type(failed).__name__}")
                w.record = rec
                self.records[name] = rec
                self.history.append(rec)
            finally:  # never leave a window open: it would pin the in-memory trace forever
                with self._lock:
                    self._open.remove(w)
            self._prune()

    def measure_idle(self, seconds: float = 5.0) -> float:
        """Mean power (W) of the machine-level devices over ``seconds`` of doing nothing.

        Stored as ``idle_w`` for every later window (``net_j = gross_j − idle_w × duration``)
        and recorded itself as window ``"idle"``.
        """
        if not seconds > 0:
            raise ValueError(f"idle seconds must be > 0, got {seconds}")
        with self.window("idle", idle_w=0.0) as w:
            time.sleep(seconds)
        rec = w.record
        assert rec is not None
        if rec.gross_j is None or rec.duration_s <= 0:
            raise RuntimeError(f"idle measurement produced no energy (flags: {rec.flags})")
        self.idle_w = rec.gross_j / rec.duration_s
        rec.idle_w = self.idle_w
        rec.net_j = rec.gross_j - self.idle_w * rec.duration_s
        return self.idle_w

    # -- description ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What produced the figures: ``{"source", "kind", "meters": [...], …}`` for result files."""
        primary, cross = [], []
        for m in self.meters:
            d = m.describe()
            devs = d.get("devices", {}) or {getattr(m, "name", "?"): {"source": m.source, "kind": m.kind}}
            for dev, info in devs.items():
                (cross if is_cross_check(dev, info.get("source", m.source)) else primary).append(
                    (dev, info.get("source", m.source), info.get("kind", m.kind))
                )
        if not primary:  # CodeCarbon on its own: its series is the figure (see integrate.py)
            primary = [c for c in cross if not c[0].startswith("pid:")]
            cross = [c for c in cross if c[0].startswith("pid:")]
        sources = sorted({s for _, s, _ in primary})
        kind = combine_kinds(k for _, _, k in primary)  # none → estimated
        return {
            "source": "+".join(sources) if sources else "none",
            "kind": kind,
            "spec": self.spec,
            "interval_s": self.interval_s,
            "idle_w": self.idle_w,
            "cross_checks": sorted({f"{dev} ({s}, {k})" for dev, s, k in cross}),
            "meters": [m.describe() for m in self.meters],
        }

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop sampling and release the meters (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s + 2.0)
        for m in self.meters:
            try:
                m.close()
            except Exception as e:
                log.warning("closing %s failed: %s", getattr(m, "name", m), e)
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MeterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def recorded_window(meters: MeterSession, name: str, records: dict[str, EnergyRecord],
                    durations: dict[str, float], after: Callable[[], None] | None = None) -> Iterator[None]:
    """``meters.window(name)`` that stores its record in ``records[name]`` and its wall time in
    ``durations[name]`` — also when the block raises, so a failed run keeps the energy of every
    window it went through — then calls ``after()`` (e.g. to refresh a result file's fields)."""
    t0 = time.perf_counter()
    w = None
    try:
        with meters.window(name) as w:
            yield
    finally:
        durations[name] = time.perf_counter() - t0
        if w is not None and w.record is not None:
            records[name] = w.record
        if after is not None:
            after()


def open_meters(
    meter: str | None = None,
    interval_s: float = 0.1,
    *,
    country: str | None = None,
    pids: Sequence[int] = (),
    gpus: str | None = None,
    trace_path: str | os.PathLike[str] | None = None,
    config: MeterConfig | None = None,
) -> MeterSession:
    """Start a :class:`MeterSession`.

    ``meter``: spec (``auto``, ``nvml``, ``rapl``, ``estimate``, ``codecarbon``,
    ``replay:<csv>``, combined with ``+``); ``None`` → ``$METER`` or ``auto``. An unknown name
    raises ``ValueError`` listing the valid ones. ``interval_s``: sampling period (s).
    ``country``: ISO-3 code for CodeCarbon. ``pids``: also attribute estimated power to these
    processes. ``gpus``: the GPUs the nvml meter reads (``CUDA_VISIBLE_DEVICES`` syntax, ``all``,
    ``none``; ``None`` → ``$CUDA_VISIBLE_DEVICES``, else all — see :mod:`energy.nvml`).
    ``trace_path``: append all samples to this power CSV too.
    """
    from energy.registry import resolve

    spec = meter or os.environ.get("METER") or "auto"
    cfg = config or MeterConfig.from_env(interval_s=interval_s, country_iso_code=country, pids=tuple(pids),
                                         gpus=gpus)
    meters = resolve(spec, cfg)
    return MeterSession(meters, interval_s=cfg.interval_s, spec=spec, trace_path=trace_path)
