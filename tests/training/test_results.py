"""Pure result functions on known inputs: metrics, mean/CI, energy summary, repeat aggregation."""

from __future__ import annotations

import math

import pytest

from energy.base import EnergyRecord
from training.evaluate import classification_metrics
from training.results import REQUIRED_KEYS, aggregate, empty_result, energy_summary, mean_ci95


def test_classification_metrics_known_values():
    m = classification_metrics([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    none = classification_metrics([1, 0], [0, 0])
    assert none["precision"] == 0.0 and none["f1"] == 0.0 and none["accuracy"] == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([1], [1, 0])


def test_mean_ci95_known_values():
    m, ci = mean_ci95([1.0, 2.0, 3.0])
    # sd = 1, t(0.975, 2) = 4.303 → half-width 4.303 / sqrt(3)
    assert m == 2.0
    assert ci == pytest.approx([2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)], abs=1e-3)
    assert mean_ci95([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        mean_ci95([])


def _rec(name, gross_j, kind="estimated", source="estimate", idle_w=None):
    net = None if idle_w is None else gross_j - idle_w * 10.0
    return EnergyRecord(name, 0.0, 10.0, 10.0, gross_j, idle_w, net, source, kind)


def test_energy_summary_kwh_sources_and_kind():
    recs = {s: _rec(s, 3.6e6, "measured", "nvml-counter", idle_w=100.0) for s in
            ("data", "architecture", "training", "system", "inference")}
    s = energy_summary(recs)
    assert s["energy_kwh"]["training"] == pytest.approx(1.0)
    assert s["energy_kwh"]["total"] == pytest.approx(5.0)
    assert s["energy_net_kwh"]["total"] == pytest.approx(5 * (3.6e6 - 1000) / 3.6e6)
    assert s["energy_kind"] == "measured" and s["energy_source"]["data"] == "nvml-counter"
    recs["data"] = _rec("data", 3.6e6)
    assert energy_summary(recs)["energy_kind"] == "estimated"


def test_aggregate_means_ci_and_failures():
    runs = []
    for i, f1 in enumerate((0.5, 0.6, 0.7)):
        r = empty_result("v0", f"r{i}")
        r.update(status="ok", f1=f1, accuracy=f1, precision=f1, recall=f1, latency_ms=1.0, co2_kg=0.1)
        r["energy_kwh"] = {s: 1.0 + i for s in ("data", "architecture", "training", "system", "inference")}
        r["energy_kwh"]["total"] = 5.0 * (1 + i)
        runs.append(r)
    agg = aggregate("v0", runs, "all")
    assert agg["f1"] == pytest.approx(0.6) and agg["n_repeats"] == 3 and agg["runs"] == ["r0", "r1", "r2"]
    assert agg["ci95"]["f1"][0] < 0.6 < agg["ci95"]["f1"][1]
    assert agg["energy_kwh"]["training"] == pytest.approx(2.0)
    assert "energy_kwh.total" in agg["ci95"] and agg["status"] == "ok"
    assert all(k in agg for k in REQUIRED_KEYS)
    bad = empty_result("v0", "r3")
    bad["failure_reason"] = "boom"
    agg2 = aggregate("v0", [*runs, bad], "all")
    assert agg2["n_ok"] == 3 and any("1 of 4 repeats failed" in n for n in agg2["notes"])
    failed = aggregate("v0", [bad], "r3")
    assert failed["status"] == "failed" and "boom" in failed["failure_reason"]
