"""In-process sessions: windows over one shared trace, fed by a replayed 200 W GPU trace."""

from __future__ import annotations

import time

import pytest

from energy import open_meters
from energy.config import MeterConfig
from energy.replay import ReplayMeter
from energy.window import MeterSession

REL = 1e-3


def _mean_w(rec):
    return rec.gross_j / rec.duration_s


def test_replay_window_gives_the_recorded_power(constant_200w_csv):
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05) as meters:
        with meters.window("steady") as w:
            time.sleep(0.4)
    rec = w.record
    assert _mean_w(rec) == pytest.approx(200.0, rel=REL)
    # a replayed NVML trace is "replayed", never "measured"; the recorded kind is kept beside it
    assert rec.source == "replay" and rec.kind == "replayed"
    assert rec.meter["kind"] == "replayed"
    assert rec.meter["meters"][0]["devices"]["gpu0"]["recorded_kind"] == "measured"
    assert rec.meter["meters"][0]["trace"] == str(constant_200w_csv)
    assert meters.records["steady"] is rec


def test_windows_nest_and_overlap(constant_200w_csv):
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05) as meters:
        with meters.window("outer") as outer:
            with meters.window("inner") as inner:
                time.sleep(0.2)
            a = meters.window("a")
            wa = a.__enter__()
            time.sleep(0.1)
            b = meters.window("b")
            wb = b.__enter__()
            time.sleep(0.1)
            a.__exit__(None, None, None)  # a closes while b is still open: overlap
            time.sleep(0.1)
            b.__exit__(None, None, None)
    assert set(meters.records) == {"outer", "inner", "a", "b"}
    for w in (outer, inner, wa, wb):
        assert _mean_w(w.record) == pytest.approx(200.0, rel=REL)
    assert outer.record.start_unix_s <= inner.record.start_unix_s
    assert inner.record.end_unix_s <= outer.record.end_unix_s
    assert wb.record.start_unix_s < wa.record.end_unix_s < wb.record.end_unix_s
    assert outer.record.gross_j > inner.record.gross_j + wa.record.gross_j - 1e-6


def test_measure_idle_and_net(constant_200w_csv):
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05) as meters:
        assert meters.measure_idle(0.3) == pytest.approx(200.0, rel=REL)
        assert meters.idle_w == meters.describe()["idle_w"]
        assert "idle" in meters.records
        with meters.window("load") as w:
            time.sleep(0.2)
        with meters.window("custom", idle_w=50.0) as w2:
            time.sleep(0.2)
    rec = w.record
    assert rec.idle_w == pytest.approx(200.0, rel=REL)
    assert rec.net_j == pytest.approx(rec.gross_j - rec.idle_w * rec.duration_s)
    assert abs(rec.net_j) < 1e-2 * rec.gross_j  # replaying a constant trace: nothing above idle
    assert w2.record.net_j == pytest.approx(w2.record.gross_j - 50.0 * w2.record.duration_s)


def test_window_that_raises_is_still_recorded(constant_200w_csv):
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05) as meters:
        with pytest.raises(RuntimeError):
            with meters.window("boom"):
                time.sleep(0.05)
                raise RuntimeError("training crashed")
    rec = meters.records["boom"]
    assert rec.gross_j is not None
    assert any("raised RuntimeError" in f for f in rec.flags)


class _Flaky:
    """A meter that fails every other read (stands in for a driver hiccup)."""

    name, source, kind = "flaky", "replay", "measured"

    def __init__(self, inner):
        self.inner, self.n = inner, 0

    def read(self):
        self.n += 1
        if self.n % 2 == 0:
            raise OSError("device busy")
        return self.inner.read()

    def devices(self):
        return self.inner.devices()

    def describe(self):
        return self.inner.describe()

    def close(self):
        pass


def test_read_errors_become_gaps_not_crashes(constant_200w_csv, caplog):
    meter = _Flaky(ReplayMeter(MeterConfig(), str(constant_200w_csv)))
    with MeterSession([meter], interval_s=0.05) as s:
        with s.window("w") as w:
            time.sleep(0.3)
    assert any(r.flag == "gap" for r in s.readings())
    assert _mean_w(w.record) == pytest.approx(200.0, rel=REL)
    assert sum("read failed" in r.getMessage() for r in caplog.records) == 1  # not a log flood


def test_session_can_also_write_the_trace(constant_200w_csv, tmp_path):
    from energy.trace import record_from_csv

    out = tmp_path / "session.csv"
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05, trace_path=out) as meters:
        with meters.window("w") as w:
            time.sleep(0.3)
    rec = record_from_csv(out, w.record.start_unix_s, w.record.end_unix_s)
    assert rec.gross_j == pytest.approx(w.record.gross_j, rel=1e-6)
