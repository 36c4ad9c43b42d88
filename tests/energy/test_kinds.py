"""Energy kinds: measured < replayed < estimated, and a replay is never passed off as measured."""

from __future__ import annotations

import time

import pytest

from energy import open_meters
from energy.base import KINDS, combine_kinds
from energy.integrate import window_record
from energy.replay import ReplayMeter
from training.results import energy_summary


@pytest.mark.parametrize(("kinds", "expected"), [
    (["measured"], "measured"),
    (["measured", "measured"], "measured"),
    (["measured", "replayed"], "replayed"),
    (["replayed", "estimated"], "estimated"),
    (["measured", "replayed", "estimated"], "estimated"),
    ([], "estimated"),  # nothing known is never a measurement
    ([None], "estimated"),
    (["measured", None], "measured"),  # an absent part adds no claim
    (["measured", "guessed"], "estimated"),  # an unknown label is not trusted
])
def test_combine_kinds_takes_the_weakest_claim(kinds, expected):
    assert combine_kinds(kinds) == expected


def test_kinds_are_ordered_strongest_first():
    assert KINDS == ("measured", "replayed", "estimated")


def test_replayed_nvml_trace_is_replayed_and_a_replayed_estimate_stays_estimated(synth, write_trace):
    gpu = write_trace(synth.power_trace(lambda t: 200.0, 5.0), "gpu.csv")
    cpu = write_trace(synth.counter_trace(20.0, 5.0, device="cpu", source="estimate", kind="estimated"),
                      "cpu.csv")
    t = [1000.0]
    m_gpu = ReplayMeter(None, str(gpu), clock=lambda: t[0])
    m_cpu = ReplayMeter(None, str(cpu), clock=lambda: t[0])
    assert m_gpu.kind == "replayed" and m_cpu.kind == "estimated"
    assert m_gpu.describe()["devices"]["gpu0"] == {
        "source": "replay", "kind": "replayed", "recorded_source": ["nvml-power"], "recorded_kind": "measured"}
    readings = []
    for i in range(11):
        t[0] = 1000.0 + 0.2 * i
        readings += m_gpu.read() + m_cpu.read()
    assert {r.kind for r in readings if r.device == "gpu0"} == {"replayed"}
    assert {r.kind for r in readings if r.device == "cpu"} == {"estimated"}
    only_gpu = window_record([r for r in readings if r.device == "gpu0"], 1000.0, 1002.0, name="w")
    assert only_gpu.kind == "replayed" and only_gpu.source == "replay"
    assert only_gpu.gross_j == pytest.approx(400.0, rel=1e-3)
    both = window_record(readings, 1000.0, 1002.0, name="w")
    assert both.kind == "estimated"  # any estimated device makes the window an estimate


def test_replay_of_a_replayed_trace_stays_replayed(tmp_path, constant_200w_csv):
    out = tmp_path / "again.csv"
    with open_meters(f"replay:{constant_200w_csv}", interval_s=0.05, trace_path=out) as meters:
        with meters.window("w"):
            time.sleep(0.3)
    again = ReplayMeter(None, str(out))
    assert again.kind == "replayed"
    assert again.describe()["devices"]["gpu0"]["recorded_kind"] == "replayed"


def test_training_summary_kind_is_the_weakest_stage_kind():
    class R:  # the EnergyRecord attributes energy_summary reads
        def __init__(self, kind):
            self.kind, self.source, self.gross_kwh, self.net_kwh = kind, "replay", 1e-3, 5e-4

    assert energy_summary({"training": R("replayed"), "inference": R("measured")})["energy_kind"] == "replayed"
    assert energy_summary({"training": R("measured")})["energy_kind"] == "measured"
    assert energy_summary({"training": R("replayed"), "data": R("estimated")})["energy_kind"] == "estimated"


def test_a_meter_class_with_an_unknown_source_or_kind_is_refused_where_it_is_defined():
    from energy.base import MeterBase
    from energy.estimate import EstimateMeter

    assert (EstimateMeter.name, EstimateMeter.source, EstimateMeter.kind) == ("estimate", "estimate", "estimated")
    with pytest.raises(ValueError, match="kind='guessed' is invalid; allowed: measured, replayed, estimated"):
        class Guessed(MeterBase, name="guess", source="estimate", kind="guessed"):
            pass
    with pytest.raises(ValueError, match="source='wattmeter' is invalid"):
        class Unknown(MeterBase, name="w", source="wattmeter", kind="measured"):
            pass
