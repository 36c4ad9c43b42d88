"""Replay a recorded power CSV (the sidecar's format) as if it were a live meter.

``replay:<power.csv>`` stands in for hardware that is absent (tests on a CPU box, re-running an
analysis on a trace recorded on a GPU host). It is named as what it is: every reading has
``source: replay`` and ``kind: replayed`` — never ``measured``, since nothing was measured now
(a replayed NVML or RAPL trace, or a replay of a replay). A replayed *estimate* stays
``estimated``: replaying does not make a model's figure any stronger (see
:func:`energy.base.combine_kinds`). ``describe()`` keeps each device's recorded kind.

Playback is in real time from the moment the meter is created: a read at ``now`` returns, per
device, the recorded values at ``trace_start + (now − created)``, linearly interpolated between
recorded rows. Past the end the trace loops; cumulative counters keep increasing across loops
(each loop adds the trace's own counter span) so a loop is not mistaken for a reset. A recorded
``gap`` row plays back as a gap.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from energy.base import MeterBase, Reading, combine_kinds
from energy.config import MeterConfig
from energy.integrate import group_by_device


def replayed_kind(recorded: str) -> str:
    """Kind of a replayed sample recorded as ``recorded``: ``estimated`` stays, all else ``replayed``."""
    return "estimated" if combine_kinds([recorded]) == "estimated" else "replayed"


class ReplayMeter(MeterBase, name="replay"):
    """Plays back every device of a recorded trace (``source: replay``)."""

    @staticmethod
    def probe(config: MeterConfig, path: str | None = None) -> str | None:
        if not path:
            return "replay needs a trace: meter='replay:<power.csv>'"
        if not Path(path).is_file():
            return f"trace {path!r} does not exist"
        return None

    def __init__(
        self, config: MeterConfig | None, path: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        from energy.trace import read_readings

        self.path = str(path)
        self._clock = clock
        rows = read_readings(path)
        if not rows:
            raise ValueError(f"trace {path!r} has no rows to replay")
        self._dev = group_by_device(rows)
        self._t_first = min(r.t_unix_s for r in rows)
        self._span_s = max(r.t_unix_s for r in rows) - self._t_first
        self._t_origin = clock()
        self.kind = combine_kinds(replayed_kind(r.kind) for r in rows)
        self._series: dict[str, dict[str, Any]] = {}
        for dev, rs in self._dev.items():
            ts = [r.t_unix_s for r in rs]
            valid_e = [r for r in rs if r.flag != "gap" and r.energy_j is not None]
            span_e = (valid_e[-1].energy_j - valid_e[0].energy_j) if len(valid_e) > 1 else 0.0
            self._series[dev] = {"rows": rs, "ts": ts, "e0": valid_e[0].energy_j if valid_e else None,
                                 "span_e": span_e}

    def _value(self, rs: list[Reading], ts: list[float], t: float, attr: str) -> float | None:
        i = bisect.bisect_right(ts, t)
        a = rs[i - 1] if i > 0 else None
        b = rs[i] if i < len(rs) else None
        va = getattr(a, attr) if a is not None and a.flag != "gap" else None
        vb = getattr(b, attr) if b is not None and b.flag != "gap" else None
        if va is not None and vb is not None and b.t_unix_s > a.t_unix_s:  # type: ignore[union-attr]
            return va + (vb - va) * (t - a.t_unix_s) / (b.t_unix_s - a.t_unix_s)  # type: ignore[union-attr]
        return va if va is not None else vb

    def read(self) -> list[Reading]:
        """Recorded values of every device at the current playback position."""
        now = self._clock()
        tau = max(0.0, now - self._t_origin)
        loops = math.floor(tau / self._span_s) if self._span_s > 0 else 0
        t_trace = self._t_first + (tau - loops * self._span_s if self._span_s > 0 else 0.0)
        out: list[Reading] = []
        for dev, s in self._series.items():
            rs, ts = s["rows"], s["ts"]
            i = bisect.bisect_right(ts, t_trace)
            cur = rs[i - 1] if i > 0 else rs[0]
            if cur.flag == "gap":
                out.append(Reading(now, dev, None, None, self.source, replayed_kind(cur.kind), "gap"))
                continue
            p = self._value(rs, ts, t_trace, "power_w")
            e = self._value(rs, ts, t_trace, "energy_j")
            if e is not None:
                e = e - s["e0"] + loops * s["span_e"]
            out.append(Reading(now, dev, p, e, self.source, replayed_kind(cur.kind)))
        return out

    def devices(self) -> list[str]:
        return sorted(self._series)

    def details(self) -> dict[str, Any]:
        return {"trace": self.path, "trace_span_s": self._span_s}

    def device_table(self) -> dict[str, dict[str, Any]]:
        out = {}
        for dev, s in self._series.items():
            recorded_kind = combine_kinds(r.kind for r in s["rows"])
            out[dev] = {"source": self.source, "kind": replayed_kind(recorded_kind),
                        "recorded_source": sorted({r.source for r in s["rows"]}), "recorded_kind": recorded_kind}
        return out
