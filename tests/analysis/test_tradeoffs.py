"""Pareto front, best trade-off and SLO choice on hand-made points."""

from __future__ import annotations

from analysis.tradeoffs import Point, best_tradeoff, key_findings, pareto_front, slo_choice

PTS = [
    Point("a", 1.0, 0.50),
    Point("b", 2.0, 0.70),
    Point("c", 3.0, 0.65),  # dominated by b
    Point("d", 4.0, 0.80),
    Point("e", 4.0, 0.75),  # dominated by d (same energy, lower F1)
    Point("f", 1.0, 0.50),  # duplicate of a: neither dominates the other
]


def test_pareto_front_known_answer():
    assert [p.id for p in pareto_front(PTS)] == ["a", "f", "b", "d"]


def test_pareto_ignores_nan():
    assert [p.id for p in pareto_front([Point("x", float("nan"), 0.9), Point("y", 1.0, 0.1)])] == ["y"]


def test_best_tradeoff_is_nearest_ideal_corner():
    # scaled: a (0, 1.0), b (1/3, 1/3), d (1, 0) → b is nearest (0, 0)
    assert best_tradeoff(PTS).id == "b"
    kf = key_findings(PTS, "kWh")
    assert kf["best_accuracy"]["id"] == "d"
    assert kf["lowest_energy"]["id"] == "a"
    assert kf["best_tradeoff"]["id"] == "b"
    assert key_findings([])["best_accuracy"] is None


def test_slo_choice_lowest_energy_meeting_both_bounds():
    cands = [
        {"id": "fast-cheap-bad", "energy_per_1k_wh": 0.1, "p99_ms": 50.0, "accuracy": 0.40},
        {"id": "slow", "energy_per_1k_wh": 0.2, "p99_ms": 900.0, "accuracy": 0.70},
        {"id": "ok-a", "energy_per_1k_wh": 0.5, "p99_ms": 100.0, "accuracy": 0.60},
        {"id": "ok-b", "energy_per_1k_wh": 0.3, "p99_ms": 400.0, "accuracy": 0.65},
        {"id": "no-energy", "energy_per_1k_wh": None, "p99_ms": 10.0, "accuracy": 0.9},
    ]
    r = slo_choice(cands, p99_max_ms=500, accuracy_min=0.5, metric="f1")
    assert r["chosen"] == "ok-b"
    reasons = {c["id"]: c["reason"] for c in r["candidates"]}
    assert "F1 0.400 < 0.5" in reasons["fast-cheap-bad"]
    assert "p99 900.0 ms > 500 ms" in reasons["slow"]
    assert "no energy" in reasons["no-energy"]
    assert slo_choice(cands, p99_max_ms=10, accuracy_min=0.99)["chosen"] is None


def test_slo_choice_refuses_to_rank_settings_that_are_not_comparable():
    from analysis.tradeoffs import not_comparable

    entries = [{"energy_source": ["estimate"], "energy_kind": ["estimated"], "model_name": "m"},
               {"energy_source": ["rapl"], "energy_kind": ["measured"], "model_name": "m"}]
    why = not_comparable(entries)
    assert why == "not comparable (energy_source)"
    assert not_comparable(entries[:1]) is None
    cands = [{"id": "a", "energy_per_1k_wh": 0.1, "p99_ms": 5.0, "accuracy": 0.3}]
    r = slo_choice(cands, p99_max_ms=500, accuracy_min=0.1, comparable=why)
    assert r["chosen"] is None and "not comparable (energy_source)" in r["candidates"][0]["reason"]
