"""Plot helpers: power CSV reading, window bounds, ordering and unit choice."""

from __future__ import annotations

import math

import pytest

from analysis import plots


def test_read_power_derives_power_from_counter_and_breaks_at_gaps(tmp_path):
    p = tmp_path / "power.csv"
    p.write_text("t_unix_s,device,power_w,energy_j,source,kind,flag\n"
                 "0.0,gpu0,,0.0,nvml-counter,measured,\n"
                 "1.0,gpu0,,200.0,nvml-counter,measured,\n"
                 "2.0,gpu0,,400.0,nvml-counter,measured,\n"
                 "3.0,gpu0,,,nvml-counter,measured,gap\n"
                 "4.0,gpu0,,800.0,nvml-counter,measured,\n"
                 "4.5,gpu0,12")  # torn last line of a killed sidecar
    df = plots.read_power(p)
    w = df.set_index("t_unix_s")["power_w"]
    assert w[1.0] == pytest.approx(200.0) and w[2.0] == pytest.approx(200.0)
    assert math.isnan(w[3.0])


def test_timeline_windows_prefers_recorded_warmup():
    rep = {"window.system.start_unix_s": 0.0, "window.system.end_unix_s": 2.0,
           "window.idle.start_unix_s": 2.0, "window.idle.end_unix_s": 4.0,
           "window.inference.start_unix_s": 6.0, "window.inference.end_unix_s": 10.0}
    assert plots.timeline_windows(rep)["warm-up"] == (4.0, 6.0)  # derived: idle end → steady start
    rep |= {"window.warmup.start_unix_s": 4.5, "window.warmup.end_unix_s": 5.5}
    w = plots.timeline_windows(rep)
    assert w["warm-up"] == (4.5, 5.5) and w["steady"] == (6.0, 10.0) and w["system"] == (0.0, 2.0)


def test_variant_order_and_units():
    names = ["v2+v7", "v10", "v0", "v2", "v2+v7+v8", "v1"]
    assert sorted(names, key=plots.variant_sort_key) == ["v0", "v1", "v2", "v10", "v2+v7", "v2+v7+v8"]
    assert plots.energy_scale_kwh(2.0) == (1.0, "kWh")
    assert plots.energy_scale_kwh(0.01) == (1e3, "Wh")
    assert plots.energy_scale_kwh(1e-5) == (3.6e6, "J")
