"""Server / client / rest attribution of a window's energy on known inputs (STYLE.md §8)."""

from __future__ import annotations

import pytest

from energy.attribution import CpuTimes, attribute
from energy.base import EnergyRecord


def _rec(per_device: dict[str, float], T: float = 10.0, covered: dict | None = None) -> EnergyRecord:
    return EnergyRecord(
        name="inference", start_unix_s=0.0, end_unix_s=T, duration_s=T,
        gross_j=sum(per_device.values()), idle_w=None, net_j=None, source="estimate",
        kind="estimated", per_device_j=per_device,
        per_device_covered_s=covered or {d: T for d in per_device},
    )


def test_estimate_model_split_is_exact():
    # 2 cores, p_min 0.74 W, p_max 3.5 W per core, 10 s. Server busy 8 core-s, client 6, other 2:
    # 16 of 20 core-s busy → E = 2·0.74·10 + (3.5 − 0.74)·16 = 14.8 + 44.16 = 58.96 J.
    p_min, p_max, T = 0.74, 3.5, 10.0
    e = 2 * p_min * T + (p_max - p_min) * 16
    a = attribute(_rec({"cpu": e}), CpuTimes(8.0, 6.0, 16.0, 2), {"cpu": 2 * p_min})
    # Under the linear model a busy core-second costs p_max.
    assert a.server_j == pytest.approx(8 * p_max)
    assert a.client_j == pytest.approx(6 * p_max)
    assert a.rest_j == pytest.approx(2 * p_max + 4 * p_min)  # other busy + idle core-seconds
    assert a.server_j + a.client_j + a.rest_j == pytest.approx(e)
    assert a.server_share == pytest.approx(8 * p_max / e)
    assert a.other_cpu_s == pytest.approx(2.0) and a.flags == []


def test_gpu_energy_goes_to_the_server():
    a = attribute(_rec({"cpu": 40.0, "gpu0": 1000.0}), CpuTimes(5.0, 5.0, 10.0, 2),
                  {"cpu": 2.0, "gpu0": 50.0}, {"cpu": "rapl", "gpu0": "nvml-counter"})
    # cpu: idle 2 W·10 s = 20 J over 20 core-s (1 J each), dynamic 20 J over 10 busy core-s (2 J)
    assert a.per_device["cpu"] == {"server_j": pytest.approx(15.0), "client_j": pytest.approx(15.0)}
    assert a.per_device["gpu0"]["server_j"] == 1000.0
    assert a.server_j == pytest.approx(1015.0) and a.rest_j == pytest.approx(10.0)


def test_below_idle_and_missing_inputs_are_flagged_not_invented():
    a = attribute(_rec({"cpu": 10.0}), CpuTimes(1.0, 1.0, 2.0, 2), {"cpu": 2.0})  # idle 20 J > 10 J
    assert a.server_j + a.client_j + a.rest_j == pytest.approx(10.0)
    assert any("below the idle baseline" in f for f in a.flags)
    none = attribute(None, CpuTimes(1.0, 1.0, 2.0, 2), None)
    assert none.server_j is None and none.flags
    no_cpu = attribute(_rec({"cpu": 10.0}), None, {"cpu": 0.5})
    assert no_cpu.server_j is None and "no CPU times" in no_cpu.flags[0]
    # Machine busy read a moment apart from the process counters: never a negative "other".
    skew = attribute(_rec({"cpu": 30.0}), CpuTimes(6.0, 5.0, 10.0, 2), {"cpu": 1.0})
    assert skew.other_cpu_s == 0.0 and skew.rest_j >= 0
