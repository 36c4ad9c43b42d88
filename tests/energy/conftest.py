"""Synthetic traces for the meter-layer tests (the replay stands in for absent hardware)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from energy.base import Reading
from energy.trace import TraceWriter

T0 = 1_700_000_000.0  # a fixed Unix time: synthetic traces are deterministic


def power_trace(power_w: Callable[[float], float], seconds: float, dt: float = 0.1, *,
                device: str = "gpu0", source: str = "nvml-power", kind: str = "measured",
                t0: float = T0) -> list[Reading]:
    """Samples of ``power_w(t - t0)`` every ``dt`` over ``[t0, t0 + seconds]`` (power only)."""
    n = round(seconds / dt)
    return [Reading(t0 + i * dt, device, power_w(i * dt), None, source, kind) for i in range(n + 1)]


def counter_trace(power_w: float, seconds: float, dt: float = 0.1, *, device: str = "gpu0",
                  source: str = "nvml-counter", kind: str = "measured", t0: float = T0,
                  e0: float = 1000.0, with_power: bool = True) -> list[Reading]:
    """A cumulative energy counter rising at ``power_w`` from ``e0``."""
    n = round(seconds / dt)
    return [
        Reading(t0 + i * dt, device, power_w if with_power else None, e0 + power_w * i * dt, source, kind)
        for i in range(n + 1)
    ]


@pytest.fixture
def write_trace(tmp_path: Path) -> Callable[..., Path]:
    """Write readings to a power CSV (the sidecar's format) and return its path."""

    def _write(readings: list[Reading], name: str = "power.csv") -> Path:
        p = tmp_path / name
        with TraceWriter(p) as w:
            w.write(readings)
        return p

    return _write


@pytest.fixture
def constant_200w_csv(write_trace: Callable[..., Path]) -> Path:
    """30 s of a constant 200 W GPU, sampled every 0.1 s, recorded as nvml-power."""
    return write_trace(power_trace(lambda t: 200.0, 30.0), "constant200.csv")


@pytest.fixture
def synth():
    """Trace builders for tests (``synth.power_trace``, ``synth.counter_trace``, ``synth.T0``)."""
    from types import SimpleNamespace

    return SimpleNamespace(power_trace=power_trace, counter_trace=counter_trace, T0=T0)
