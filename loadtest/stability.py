"""Steady state by measurement, not by assumption (``python -m loadtest.run --stable``).

The steady phase runs in sub-windows of ``window_s`` seconds (counted from the first request)
until the last ``n`` agree: each of throughput, p50 latency **and** joules per request lies
within ``±tolerance`` of the mean of the last ``n`` — the stability rule of Triton's
perf_analyzer (``--stability-percentage``, three measurements), extended to energy. The
measured steady window is then the union of those ``n`` sub-windows. A run that never settles
gives up after ``max_windows`` and is flagged ``not_stable`` (it is kept, and says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RULE = ("last {n} sub-windows of {window_s:g} s each within ±{pct:g} % of their mean on "
        "throughput, p50 latency and J/request (perf_analyzer's rule, extended to energy)")
METRICS = ("throughput_rps", "p50_ms", "j_per_request")


def within(values: Sequence[float | None], tolerance: float) -> bool:
    """Every value within ``±tolerance`` (a fraction) of their mean; ``False`` if any is
    missing or the mean is not positive."""
    if not values or any(v is None for v in values):
        return False
    m = sum(values) / len(values)  # type: ignore[arg-type]
    return m > 0 and all(abs(v - m) <= tolerance * m for v in values)  # type: ignore[operator]


def is_stable(windows: Sequence[dict[str, Any]], n: int = 3, tolerance: float = 0.10) -> bool:
    """The last ``n`` windows agree on every metric of :data:`METRICS`."""
    if len(windows) < n:
        return False
    last = windows[-n:]
    return all(within([w.get(m) for w in last], tolerance) for m in METRICS)


@dataclass
class StabilityMonitor:
    """Follows a running steady phase and says when it is stable (``check`` → a reason to stop).

    ``measure(t0, t1)`` returns one sub-window's ``{throughput_rps, p50_ms, j_per_request,
    n_ok}`` from what the client and the sidecar have written so far; ``first_request()`` the
    Unix time of the phase's first request (``None`` before it). ``lag_s`` is how long after a
    sub-window's end its data is read, so the last sidecar samples and responses are in.
    """

    measure: Callable[[float, float], dict[str, Any]]
    first_request: Callable[[], float | None]
    window_s: float = 5.0
    max_windows: int = 12
    n: int = 3
    tolerance: float = 0.10
    lag_s: float = 0.6
    clock: Callable[[], float] = time.time
    windows: list[dict[str, Any]] = field(default_factory=list)
    stable: bool = False
    t_first: float | None = None

    def check(self) -> str | None:
        """Measure every sub-window that has ended; a stop reason once stable or given up."""
        if self.t_first is None:
            self.t_first = self.first_request()
            if self.t_first is None:
                return None
        while len(self.windows) < self.max_windows:
            a = self.t_first + len(self.windows) * self.window_s
            b = a + self.window_s
            if self.clock() < b + self.lag_s:
                return None
            self.windows.append({"start_unix_s": a, "end_unix_s": b, **self.measure(a, b)})
            if is_stable(self.windows, self.n, self.tolerance):
                self.stable = True
                return f"stable after {len(self.windows)} sub-windows"
        return f"not stable after {self.max_windows} sub-windows"

    @property
    def window(self) -> tuple[float, float] | None:
        """The measured steady window: the last ``n`` sub-windows once stable; ``None`` before
        a single sub-window ended (the caller falls back to the requests' own span)."""
        if not self.windows:
            return None
        last = self.windows[-self.n:] if self.stable else self.windows
        return last[0]["start_unix_s"], last[-1]["end_unix_s"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "rule": RULE.format(n=self.n, window_s=self.window_s, pct=self.tolerance * 100),
            "window_s": self.window_s,
            "max_windows": self.max_windows,
            "windows": self.windows,
        }
