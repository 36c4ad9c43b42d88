"""Pure result functions on known inputs: metrics, mean/CI, energy summary, repeat aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from energy.base import EnergyRecord
from study.metrics import classification_metrics
from training.evaluate import summarise
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
    # TP 2, FN 1, TN 2, FP 1: MCC (2·2 − 1·1) / √(3·3·3·3) = 1/3, balanced accuracy 2/3
    m = classification_metrics([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1])
    assert m["mcc"] == pytest.approx(1 / 3) and m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["baseline_f1"] == pytest.approx(2 / 3)  # 2π/(1+π), π = 0.5
    assert m["roc_auc"] is None and m["pair_accuracy"] is None  # no scores given


def test_summarise_scores_the_logits_and_the_pairs():
    """The training evaluation's metrics from logits: argmax predictions, logit-difference
    scores (ROC-AUC, pair accuracy) and the test split's pair ids, all on hand-worked values."""
    labels = [1, 1, 0, 0, 1]
    scores = [2.0, -1.0, -3.0, 0.5, 1.0]  # logit₁ − logit₀ → predictions 1, 0, 0, 1, 1
    logits = np.array([[0.0, s] for s in scores], dtype=np.float32)
    pairs = ["a", "b", "a", "b", None]  # a: 2 > −3 (win); b: −1 < 0.5 (loss); the last is unpaired
    m = summarise(labels, logits, wall_s=0.5, pairs=pairs)
    assert m["accuracy"] == pytest.approx(0.6) and m["f1"] == pytest.approx(2 / 3)
    # TP 2, FN 1, TN 1, FP 1: MCC (2·1 − 1·1) / √(3·3·2·2) = 1/6
    assert m["mcc"] == pytest.approx(1 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # positives {2, −1, 1} vs negatives {−3, 0.5}: 5 of 6 ordered right
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["baseline_f1"] == pytest.approx(2 * 0.6 / 1.6)
    assert m["pair_accuracy"] == pytest.approx(0.5) and m["n_pairs"] == 2
    assert m["latency_ms"] == pytest.approx(100.0) and m["n_evaluated"] == 5 and m["predicted_positive"] == 3
    unpaired = summarise(labels, logits, wall_s=0.5)
    assert unpaired["pair_accuracy"] is None and unpaired["n_pairs"] == 0
    one_class = summarise([1, 1], logits[:2], wall_s=0.1)
    assert one_class["roc_auc"] is None and one_class["balanced_accuracy"] is None
    assert one_class["baseline_f1"] == 1.0
    empty = summarise([], np.zeros((0, 2), np.float32), wall_s=0.0)
    assert empty["n_evaluated"] == 0 and empty["latency_ms"] is None and empty["mcc"] is None
    with pytest.raises(ValueError, match="differ in length"):
        summarise([1, 0, 1], logits[:2], wall_s=0.1)


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
    # no outer window (a repeat in progress): the total so far is the sum, nothing unaccounted yet
    assert s["energy_kwh"]["total"] == pytest.approx(5.0) and s["energy_kwh"]["unaccounted"] is None
    assert s["energy_kwh"]["export"] is None
    assert s["energy_net_kwh"]["total"] == pytest.approx(5 * (3.6e6 - 1000) / 3.6e6)
    assert s["energy_kind"] == "measured" and s["energy_source"]["data"] == "nvml-counter"
    recs["data"] = _rec("data", 3.6e6)
    assert energy_summary(recs)["energy_kind"] == "estimated"


def test_energy_totals_identity_with_export_and_outer_window():
    """total = the outer ``run`` window; stages + export + unaccounted = total (gross and net)."""
    stages = ("data", "architecture", "training", "system", "inference")
    recs = {s: _rec(s, 3.6e6, "measured", "rapl", idle_w=100.0) for s in stages}
    recs["export"] = _rec("export", 1.8e6, "measured", "rapl", idle_w=100.0)
    recs["run"] = EnergyRecord("run", 0.0, 70.0, 70.0, 6 * 3.6e6, 100.0, 6 * 3.6e6 - 7000.0, "rapl", "measured")
    s = energy_summary(recs)
    kwh, net = s["energy_kwh"], s["energy_net_kwh"]
    assert kwh["total"] == pytest.approx(6.0) and kwh["export"] == pytest.approx(0.5)
    assert kwh["unaccounted"] == pytest.approx(0.5)  # 6 − 5 stages − 0.5 export
    assert sum(kwh[k] for k in (*stages, "export", "unaccounted")) == pytest.approx(kwh["total"], rel=1e-12)
    # net: the outer window's idle share (70 s × 100 W) minus the windows' (6 × 10 s × 100 W)
    assert net["unaccounted"] == pytest.approx((0.5 * 3.6e6 - 1000.0) / 3.6e6)
    assert sum(net[k] for k in (*stages, "export", "unaccounted")) == pytest.approx(net["total"], rel=1e-12)
    assert s["energy_kind"] == "measured" and s["energy_source"]["export"] == "rapl"
    assert list(kwh) == [*stages, "export", "unaccounted", "total"]
    recs["run"].kind = "estimated"
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


def _ok(run_id, f1, mcc=0.2, flags=()):
    r = empty_result("v0", run_id)
    r.update(status="ok", f1=f1, accuracy=f1, precision=f1, recall=f1, mcc=mcc, latency_ms=1.0,
             flags=list(flags))
    return r


def test_flagged_repeats_are_left_out_of_the_means_unless_asked():
    runs = [_ok("r0", 0.5, 0.01), _ok("r1", 0.6, 0.02),
            _ok("r2", 0.9, 0.5, ["resumed_from_step_4", "tokenisation_cache_hit"])]
    agg = aggregate("v0", runs, "all")
    assert agg["f1"] == pytest.approx(0.55) and agg["n_used"] == 2 and agg["n_ok"] == 3
    assert agg["excluded"] == [{"run_id": "r2", "flags": ["resumed_from_step_4", "tokenisation_cache_hit"]}]
    assert agg["flags"] == [] and agg["include_flagged"] is False and agg["run_id"] == "all"
    assert agg["energy_records_of_run"] == "r1"  # the last *used* repeat
    note = next(n for n in agg["notes"] if "left out" in n)
    assert "1 of 3 ok repeats" in note and "r2: resumed_from_step_4" in note and "--include-flagged" in note
    # MCC 0.01, 0.02: the CI (t with 1 df) contains 0 → at chance
    assert agg["ci95"]["mcc"][0] < 0 < agg["ci95"]["mcc"][1] and agg["at_chance"] is True

    inc = aggregate("v0", runs, "all", include_flagged=True)
    assert inc["f1"] == pytest.approx(2 / 3) and inc["n_used"] == 3 and inc["excluded"] == []
    assert inc["flags"] == ["resumed_from_step_4", "tokenisation_cache_hit"]
    assert any("included in the means" in n for n in inc["notes"])

    only = aggregate("v0", [runs[2]], "r2")  # nothing unflagged: the flagged figures, marked
    assert only["status"] == "ok" and only["f1"] == pytest.approx(0.9) and only["n_used"] == 1
    assert only["flags"] == ["resumed_from_step_4", "tokenisation_cache_hit"] and only["excluded"] == []
    assert any("every ok repeat is flagged" in n for n in only["notes"])
    assert only["at_chance"] is False  # |MCC| 0.5 at n = 1
