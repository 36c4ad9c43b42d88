"""Power CSV round trip, marks, and the shared integration path."""

from __future__ import annotations

import csv
import logging

import pytest

from energy.integrate import window_record
from energy.trace import COLUMNS, marks_path, read_marks, read_readings, record_from_csv


def test_csv_round_trip_matches_in_memory_integration(synth, write_trace):
    rs = synth.power_trace(lambda t: 100.0 if t < 5.0 else 300.0, 10.0, dt=0.01)
    rs += synth.counter_trace(20.0, 10.0, device="cpu", source="estimate", kind="estimated")
    p = write_trace(rs)
    with open(p) as fh:
        assert next(csv.reader(fh)) == list(COLUMNS)
    back = read_readings(p)
    assert len(back) == len(rs)
    T0 = synth.T0
    from_csv = record_from_csv(p, T0 + 1.0, T0 + 9.0, name="w", idle_w=10.0)
    in_mem = window_record(rs, T0 + 1.0, T0 + 9.0, name="w", idle_w=10.0)
    assert from_csv.gross_j == pytest.approx(in_mem.gross_j, rel=1e-6)
    assert from_csv.net_j == pytest.approx(in_mem.gross_j - 80.0, rel=1e-6)
    assert from_csv.kind == "estimated"
    assert from_csv.meter["trace"] == str(p)
    assert from_csv.meter["devices"]["gpu0"] == {"source": "nvml-power", "kind": "measured"}


def test_marks_cut_windows(synth, write_trace):
    p = write_trace(synth.power_trace(lambda t: 200.0, 10.0))
    mp = marks_path(p)
    assert mp.name == "power.marks.csv"
    T0 = synth.T0
    mp.write_text(f"t_unix_s,name\n{T0 + 6.0:.6f},steady_end\n{T0 + 1.5:.6f},steady_start\n")
    assert read_marks(p) == [("steady_start", T0 + 1.5), ("steady_end", T0 + 6.0)]
    rec = record_from_csv(p, "steady_start", "steady_end", name="steady")
    assert rec.gross_j == pytest.approx(200.0 * 4.5, rel=1e-3)
    with pytest.raises(KeyError, match="known marks"):
        record_from_csv(p, "nope", "steady_end")


def test_no_marks_file_means_no_marks(synth, write_trace):
    assert read_marks(write_trace(synth.power_trace(lambda t: 1.0, 1.0))) == []


def test_torn_last_line_is_skipped_with_one_warning(synth, write_trace, caplog):
    p = write_trace(synth.power_trace(lambda t: 200.0, 10.0))
    with open(p, "a") as fh:
        fh.write("1700000010.1,gpu0,20")  # a write cut short by SIGKILL
    with caplog.at_level(logging.WARNING):
        rs = read_readings(p)
    assert len(rs) == 101
    assert sum("malformed" in r.message for r in caplog.records) == 1


def test_not_a_power_csv_is_a_clear_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a power CSV"):
        read_readings(p)
