"""The one integration path, on synthetic traces with known answers (all within 0.1 %)."""

from __future__ import annotations

import dataclasses

import pytest

from energy.base import Reading
from energy.integrate import device_energy, window_record

REL = 1e-3  # 0.1 %


def test_constant_200w_for_10s_is_2000j(synth):
    rs = synth.power_trace(lambda t: 200.0, 10.0)
    rec = window_record(rs, synth.T0, synth.T0 + 10.0, name="steady")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)
    assert rec.duration_s == pytest.approx(10.0)
    assert rec.source == "nvml-power" and rec.kind == "measured"
    assert rec.per_device_j == {"gpu0": pytest.approx(2000.0, rel=REL)}
    assert rec.flags == []
    assert rec.net_j is None  # no idle baseline given


def test_constant_counter_200w_for_10s_is_2000j(synth):
    rs = synth.counter_trace(200.0, 10.0, with_power=False)
    de = device_energy(rs, synth.T0, synth.T0 + 10.0)
    assert de.method == "counter"
    assert de.energy_j == pytest.approx(2000.0, rel=REL)


def test_power_steps(synth):
    # 100 W for 5 s then 300 W for 5 s, sampled every 10 ms: 500 J + 1500 J.
    rs = synth.power_trace(lambda t: 100.0 if t < 5.0 else 300.0, 10.0, dt=0.01)
    rec = window_record(rs, synth.T0, synth.T0 + 10.0, name="steps")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)


def test_counter_steps_are_exact(synth):
    T0 = synth.T0
    rs, e = [], 0.0
    for i in range(101):
        t = i * 0.1
        rs.append(Reading(T0 + t, "gpu0", None, e, "nvml-counter", "measured"))
        e += (100.0 if t < 5.0 - 1e-9 else 300.0) * 0.1
    rec = window_record(rs, T0, T0 + 10.0, name="steps")
    assert rec.gross_j == pytest.approx(2000.0, rel=1e-9)


def test_window_is_clipped_exactly_at_its_edges(synth):
    T0 = synth.T0
    rs = synth.power_trace(lambda t: 10.0 * t, 10.0)  # a ramp: linear interpolation is exact
    t0, t1 = 2.05, 7.55
    rec = window_record(rs, T0 + t0, T0 + t1, name="clip")
    assert rec.gross_j == pytest.approx(5.0 * (t1**2 - t0**2), rel=1e-6)
    const = window_record(synth.counter_trace(200.0, 10.0), T0 + t0, T0 + t1, name="clip")
    assert const.gross_j == pytest.approx(200.0 * (t1 - t0), rel=1e-9)


def test_gap_rows_are_bridged_and_flagged(synth):
    rs = synth.power_trace(lambda t: 200.0, 10.0)
    T0 = synth.T0
    holed = [
        dataclasses.replace(r, power_w=None, flag="gap") if 3.0 < r.t_unix_s - T0 < 6.0 else r
        for r in rs
    ]
    rec = window_record(holed, T0, T0 + 10.0, name="gappy")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)
    assert any("gap" in f for f in rec.flags), rec.flags


def test_long_sample_interval_is_flagged_as_gap(synth):
    rs = [r for r in synth.power_trace(lambda t: 200.0, 10.0) if not 3.0 < r.t_unix_s - synth.T0 < 6.0]
    rec = window_record(rs, synth.T0, synth.T0 + 10.0, name="sparse")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)
    assert any("gap" in f and "3.000 s" in f for f in rec.flags), rec.flags


def _reset_at_5s(rs, T0):
    # The counter restarts from 0 at t = 5 s (driver reload) and keeps rising at 200 W.
    return [
        dataclasses.replace(r, energy_j=r.energy_j - 1000.0 - 1000.0) if r.t_unix_s - T0 >= 5.0 - 1e-9 else r
        for r in rs
    ]


def test_counter_reset_is_flagged_and_not_summed_through(synth):
    T0 = synth.T0
    rs = _reset_at_5s(synth.counter_trace(200.0, 10.0, e0=1000.0, with_power=False), T0)
    assert rs[50].energy_j < rs[49].energy_j  # the reset is in the data
    rec = window_record(rs, T0, T0 + 10.0, name="reset")
    # The interval across the reset is left out (no power to bridge it): 2000 J − 0.1 s × 200 W.
    assert rec.gross_j == pytest.approx(1980.0, rel=1e-9)
    assert any("reset" in f and "left out" in f for f in rec.flags), rec.flags


def test_counter_reset_is_bridged_with_power_when_available(synth):
    T0 = synth.T0
    rs = _reset_at_5s(synth.counter_trace(200.0, 10.0, e0=1000.0, with_power=True), T0)
    rec = window_record(rs, T0, T0 + 10.0, name="reset")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)
    assert any("reset" in f and "bridged" in f for f in rec.flags), rec.flags


def test_meter_flagged_wrap_is_not_summed_through(synth):
    T0 = synth.T0
    rs = synth.counter_trace(200.0, 10.0, with_power=False)
    # A meter that could not unwrap says so: the jump at that sample must not count.
    rs[30] = dataclasses.replace(rs[30], flag="wrap")
    rs = rs[:30] + [dataclasses.replace(r, energy_j=r.energy_j + 5e6) for r in rs[30:]]
    rec = window_record(rs, T0, T0 + 10.0, name="wrap")
    assert rec.gross_j == pytest.approx(1980.0, rel=1e-9)
    assert any("wrap" in f for f in rec.flags)


def test_idle_subtraction(synth):
    rs = synth.power_trace(lambda t: 200.0, 10.0)
    rec = window_record(rs, synth.T0, synth.T0 + 10.0, name="load", idle_w=50.0)
    assert rec.idle_w == 50.0
    assert rec.net_j == pytest.approx(2000.0 - 500.0, rel=REL)
    d = rec.to_dict()
    assert d["net_kwh"] == pytest.approx(1500.0 / 3.6e6, rel=REL)


def test_nested_and_overlapping_windows_share_one_trace(synth):
    T0 = synth.T0
    rs = synth.power_trace(lambda t: 100.0 if t < 5.0 else 300.0, 10.0, dt=0.01)
    outer = window_record(rs, T0, T0 + 10.0, name="outer").gross_j
    first = window_record(rs, T0, T0 + 5.0, name="first").gross_j
    second = window_record(rs, T0 + 5.0, T0 + 10.0, name="second").gross_j
    overlap = window_record(rs, T0 + 4.0, T0 + 6.0, name="overlap").gross_j
    assert first + second == pytest.approx(outer, rel=1e-9)  # additivity over a split
    assert overlap == pytest.approx(100.0 + 300.0, rel=5e-3)


def test_uncovered_window_part_is_not_invented(synth):
    rs = synth.power_trace(lambda t: 200.0, 10.0)
    rec = window_record(rs, synth.T0 - 2.0, synth.T0 + 10.0, name="early")
    assert rec.gross_j == pytest.approx(2000.0, rel=REL)
    assert any("not covered" in f for f in rec.flags)


def test_devices_sum_and_kind_is_estimated_if_any_device_is(synth):
    T0 = synth.T0
    gpu = synth.power_trace(lambda t: 200.0, 10.0)
    cpu = synth.counter_trace(20.0, 10.0, device="cpu", source="estimate", kind="estimated")
    rec = window_record(gpu + cpu, T0, T0 + 10.0, name="both")
    assert rec.gross_j == pytest.approx(2200.0, rel=REL)
    assert rec.source == "estimate+nvml-power"
    assert rec.kind == "estimated"
    only_gpu = window_record(gpu, T0, T0 + 10.0, name="gpu")
    assert only_gpu.kind == "measured"


def test_cross_checks_are_reported_not_summed(synth):
    T0 = synth.T0
    cpu = synth.counter_trace(20.0, 10.0, device="cpu", source="estimate", kind="estimated")
    cc = synth.counter_trace(25.0, 10.0, device="codecarbon", source="codecarbon", kind="estimated")
    pid = synth.counter_trace(5.0, 10.0, device="pid:123", source="estimate", kind="estimated")
    rec = window_record(cpu + cc + pid, T0, T0 + 10.0, name="x")
    assert rec.gross_j == pytest.approx(200.0, rel=REL)
    assert set(rec.cross_checks) == {"codecarbon", "pid:123"}
    assert rec.cross_checks["codecarbon"]["energy_j"] == pytest.approx(250.0, rel=REL)
    assert rec.cross_checks["pid:123"]["energy_j"] == pytest.approx(50.0, rel=REL)


def test_no_samples_gives_none_with_a_flag():
    rec = window_record([], 0.0, 1.0, name="empty")
    assert rec.gross_j is None and rec.net_j is None
    assert rec.flags


def test_reversed_window_is_an_error(synth):
    with pytest.raises(ValueError, match="before its start"):
        device_energy(synth.power_trace(lambda t: 1.0, 1.0), 10.0, 5.0)


def test_net_is_computed_over_covered_time_only(synth):
    # 100 W sampled for 6 s of a 10 s window: 600 J counted; the idle 40 W is subtracted over
    # the 6 covered seconds (360 J net), not the full 10 s (which would give 200 J).
    rs = synth.power_trace(lambda t: 100.0, 6.0, device="cpu", source="estimate", kind="estimated")
    rec = window_record(rs, synth.T0, synth.T0 + 10.0, name="steady", idle_w=40.0)
    assert rec.gross_j == pytest.approx(600.0, rel=REL)
    assert rec.net_j == pytest.approx(360.0, rel=REL)
    assert rec.coverage == pytest.approx(0.6, rel=REL)
    assert any("not covered" in f for f in rec.flags)


def test_net_per_device_over_each_devices_covered_time(synth):
    # cpu: 50 W over the whole 10 s (idle 20 W); gpu: 200 W for the first 5 s only (idle 50 W).
    cpu = synth.power_trace(lambda t: 50.0, 10.0, device="cpu", source="estimate", kind="estimated")
    gpu = synth.power_trace(lambda t: 200.0, 5.0, device="gpu0")
    rec = window_record(cpu + gpu, synth.T0, synth.T0 + 10.0, name="steady",
                        idle_w_per_device={"cpu": 20.0, "gpu0": 50.0})
    assert rec.gross_j == pytest.approx(1500.0, rel=REL)
    assert rec.net_j == pytest.approx((500.0 - 200.0) + (1000.0 - 250.0), rel=REL)
    assert rec.per_device_covered_s == {"cpu": pytest.approx(10.0), "gpu0": pytest.approx(5.0)}
    assert rec.coverage == pytest.approx(0.5, rel=REL)
    assert rec.idle_w == pytest.approx(70.0)


def test_idle_power_per_device_uses_covered_time(synth):
    from energy.integrate import idle_power_per_device

    rs = synth.power_trace(lambda t: 30.0, 4.0, device="cpu", source="estimate", kind="estimated")
    idle = window_record(rs, synth.T0, synth.T0 + 5.0, name="idle")
    assert idle_power_per_device(idle) == {"cpu": pytest.approx(30.0, rel=REL)}
    assert idle_power_per_device(None) is None
