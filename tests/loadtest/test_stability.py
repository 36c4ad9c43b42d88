"""The --stable rule on known sub-window series (perf_analyzer's ±10 % over the last three)."""

from __future__ import annotations

from loadtest.stability import StabilityMonitor, is_stable, within


def _w(tput: float, p50: float, j: float) -> dict:
    return {"throughput_rps": tput, "p50_ms": p50, "j_per_request": j}


def test_rule_needs_all_three_metrics_within_ten_percent():
    assert within([100, 105, 95], 0.10) and not within([100, 120, 95], 0.10)
    assert not within([1.0, None, 1.0], 0.10)
    steady = [_w(200, 50, 0.5), _w(100, 30, 1.0), _w(102, 31, 1.02), _w(99, 30, 0.98)]
    assert is_stable(steady) and not is_stable(steady[:3])
    energy_drifts = [_w(100, 30, 1.0), _w(101, 30, 1.3), _w(100, 30, 0.9)]
    assert not is_stable(energy_drifts)  # throughput and p50 agree, J/request does not


def test_monitor_stops_when_stable_and_reports_the_last_three_windows():
    now = [1000.0]
    series = iter([_w(50, 90, 2.0), _w(100, 30, 1.0), _w(101, 30, 1.0), _w(99, 31, 1.01)])
    m = StabilityMonitor(measure=lambda a, b: next(series), first_request=lambda: 1000.0,
                         window_s=5.0, max_windows=10, clock=lambda: now[0])
    assert m.check() is None  # no sub-window has ended yet
    now[0] = 1000.0 + 4 * 5.0 + 1.0
    assert m.check() == "stable after 4 sub-windows"
    assert m.stable and m.window == (1005.0, 1020.0)
    d = m.to_dict()
    assert d["stable"] and len(d["windows"]) == 4 and "±10 %" in d["rule"]


def test_monitor_gives_up_after_max_windows():
    vals = iter([_w(100 * (i % 2 + 1), 30, 1.0) for i in range(5)])
    m = StabilityMonitor(measure=lambda a, b: next(vals), first_request=lambda: 0.0,
                         window_s=1.0, max_windows=5, clock=lambda: 100.0)
    assert m.check() == "not stable after 5 sub-windows"
    assert not m.stable and m.window == (0.0, 5.0)
