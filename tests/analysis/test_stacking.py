"""Stacking verdicts on hand-made inputs with known answers (s1 = 0.2, s2 = 0.3 → S = 0.44)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import stacking


def _obs(measured: float, spread: float = 0.002, n: int = 3) -> dict[str, list[float]]:
    def rep(x: float) -> list[float]:
        return [x * (1 + spread * k) for k in (0, 1, -1, 2, -2)[:n]]

    return {"v0": rep(100.0), "v1": rep(80.0), "v2": rep(70.0), "v1+v2": rep(measured)}


def test_prediction_is_044():
    r = stacking.stack_one(_obs(56.0), "v1+v2")
    assert r["predicted"] == pytest.approx(0.44, abs=1e-9)
    assert r["naive_sum"] == pytest.approx(0.5, abs=1e-9)
    assert r["component_savings"]["v1"]["value"] == pytest.approx(0.2, abs=1e-9)
    assert r["component_savings"]["v2"]["value"] == pytest.approx(0.3, abs=1e-9)


@pytest.mark.parametrize(
    ("measured_energy", "measured_saving", "verdict"),
    [(56.0, 0.44, "multiplicative"), (40.0, 0.60, "compounding"), (70.0, 0.30, "cancelling")],
)
def test_verdicts_with_tight_cis(measured_energy, measured_saving, verdict):
    r = stacking.stack_one(_obs(measured_energy), "v1+v2")
    assert r["measured"] == pytest.approx(measured_saving, abs=1e-9)
    assert r["verdict"] == verdict
    lo, hi = r["interaction_ci95"]
    assert lo <= r["interaction_ratio"] <= hi
    assert r["predicted_ci95"][0] < 0.44 < r["predicted_ci95"][1]


def test_single_runs_are_inconclusive():
    r = stacking.stack_one(_obs(40.0, n=1), "v1+v2")
    assert r["verdict"] == "inconclusive (n too small)"
    assert r["interaction_ci95"] is None and r["measured"] == pytest.approx(0.6)
    assert "fewer than 2 repeats" in r["reason"]


def test_noisy_runs_overlap_is_inconclusive():
    r = stacking.stack_one(_obs(56.0, spread=0.08), "v1+v2")
    assert r["verdict"] == "inconclusive (CIs overlap)"
    lo, hi = r["interaction_ci95"]
    assert lo < 1.0 < hi


def test_missing_component_is_na():
    obs = _obs(56.0)
    del obs["v2"]
    r = stacking.stack_one(obs, "v1+v2")
    assert r["verdict"] == "n/a" and "v2" in r["reason"]


def test_three_way_prediction():
    obs = {"v0": [100.0, 100.2, 99.8], "a": [80.0, 80.1, 79.9], "b": [50.0, 50.1, 49.9],
           "c": [90.0, 90.1, 89.9], "a+b+c": [36.0, 36.1, 35.9]}
    r = stacking.stack_one(obs, "a+b+c")
    assert r["predicted"] == pytest.approx(1 - 0.8 * 0.5 * 0.9)
    assert r["verdict"] == "multiplicative"


def test_verdict_from_ratio_ci_margin():
    assert stacking.verdict_from_ratio_ci((0.97, 1.03)) == "multiplicative"
    assert stacking.verdict_from_ratio_ci((0.90, 1.03)) == "inconclusive (CIs overlap)"
    assert stacking.verdict_from_ratio_ci((0.90, 1.03), margin=0.10) == "multiplicative"
    assert stacking.verdict_from_ratio_ci(None) == "inconclusive (n too small)"


@pytest.mark.parametrize("ci, verdict", [
    ((1.001, 1.004), "multiplicative"),  # tight and above 1, but inside the ±5 % margin
    ((0.90, 0.94), "compounding"),
    ((0.97, 0.99), "multiplicative"),
    ((1.06, 1.10), "cancelling"),
    ((1.02, 1.02), "inconclusive (zero-width CI)"),
])
def test_margin_is_tested_before_the_side_of_one(ci, verdict):
    assert stacking.verdict_from_ratio_ci(ci) == verdict


def test_mixed_meters_or_models_are_not_comparable():
    rows = []
    for v, e, src in (("v0", 100.0, "estimate"), ("v1", 80.0, "estimate"), ("v2", 70.0, "rapl"),
                      ("v1+v2", 56.0, "estimate")):
        for k, d in enumerate((0.0, 0.001, -0.001)):
            rows.append({"variant": v, "repeat": k, "used": True, "energy_kwh.training": e * (1 + d),
                         "energy_source": src, "energy_kind": "estimated", "model_name": "tiny", "data": ""})
    out = stacking.training_stacking(pd.DataFrame(rows))
    assert out[0]["verdict"] == "not comparable" and "energy_source" in out[0]["reason"]
    for r in rows:
        r["energy_source"] = "estimate"
    assert stacking.training_stacking(pd.DataFrame(rows))[0]["verdict"] == "multiplicative"
    rows[0]["model_name"] = "answerdotai/ModernBERT-base"
    assert "model_name" in stacking.training_stacking(pd.DataFrame(rows))[0]["reason"]


def test_serving_stacking_scopes_by_engine():
    rows = []
    for engine, f in (("onnxruntime", 1.0), ("pytorch", 2.0)):
        for v, e in (("v0", 100.0), ("v1", 80.0), ("v2", 70.0), ("v1+v2", 56.0)):
            for k, d in enumerate((0.0, 0.001, -0.001)):
                rows.append({"engine": engine, "format": "onnx", "load": "closed-u8", "variant": v,
                             "repeat": k, "used": True, "energy_per_1k_wh.gross": e * f * (1 + d)})
    # a superseded observation must not count
    rows.append({"engine": "pytorch", "format": "onnx", "load": "closed-u8", "variant": "v1+v2",
                 "repeat": 9, "used": False, "energy_per_1k_wh.gross": 1e6})
    out = stacking.serving_stacking(pd.DataFrame(rows), metric="energy_per_1k_wh.gross")
    assert [r["scope"] for r in out] == ["onnxruntime / onnx / closed-u8", "pytorch / onnx / closed-u8"]
    assert all(r["verdict"] == "multiplicative" for r in out)
    # the default is the server-attributed figure; without it there is nothing to stack
    assert stacking.serving_stacking(pd.DataFrame(rows)) == []


def test_ci_math_against_hand_calculation():
    # Every side n = 3 with cv = 0.1, so Var(ln mean) = 0.01/3 per term and Welch–Satterthwaite
    # gives whole degrees of freedom (t quantiles from a table: t(.975, 4) = 2.776445,
    # t(.975, 8) = 2.306004).
    obs = {"v0": [90.0, 100.0, 110.0], "v1": [72.0, 80.0, 88.0], "v2": [63.0, 70.0, 77.0],
           "v1+v2": [50.4, 56.0, 61.6]}
    r = stacking.stack_one(obs, "v1+v2")
    # ρ = 56·100/(80·70) = 1; four terms of equal variance → var 0.04/3, df 8
    h = 2.306004 * (0.04 / 3) ** 0.5
    assert r["interaction_ratio"] == pytest.approx(1.0)
    assert r["interaction_ci95"] == pytest.approx([math.exp(-h), math.exp(h)], rel=1e-5)
    assert r["verdict"] == "inconclusive (CIs overlap)"
    # predicted remaining 0.8·0.7 = 0.56; ln terms v1 + v2 − 2 ln v0 → var 6·0.01/3, df 36/9 = 4
    h = 2.776445 * (0.06 / 3) ** 0.5
    assert r["predicted"] == pytest.approx(0.44)
    assert r["predicted_ci95"] == pytest.approx([1 - 0.56 * math.exp(h), 1 - 0.56 * math.exp(-h)], rel=1e-5)
    # a single saving: two terms → var 0.02/3, df 4
    h = 2.776445 * (0.02 / 3) ** 0.5
    assert r["component_savings"]["v1"]["ci95"] == pytest.approx([1 - 0.8 * math.exp(h), 1 - 0.8 * math.exp(-h)],
                                                                 rel=1e-5)
