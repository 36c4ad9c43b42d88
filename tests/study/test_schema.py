"""The one result schema: round trips, old files, and refusals that name the key."""

from __future__ import annotations

import pytest

from study.metrics import at_chance, baseline_f1, classification_metrics, pair_accuracy
from study.schema import LoadSummary, Per1k, SchemaError, TrainingResult


def test_load_summary_round_trip_keeps_unknown_keys_and_fills_new_fields():
    old = {"status": "ok", "engine": "onnxruntime", "energy_per_1k_wh": {"gross": 1.0, "net": 0.5},
           "energy_kind": "estimated", "marks": {"ready": 1.0}}  # written before attribution existed
    s = LoadSummary.from_dict(old)
    assert s.energy_per_1k_wh == Per1k(gross=1.0, net=0.5, server=None)
    assert s.attribution is None and s.flags == [] and s.latency_basis == "sent"
    d = s.to_dict()
    assert d["marks"] == {"ready": 1.0} and d["energy_per_1k_wh"]["server"] is None
    assert LoadSummary.from_dict(d).to_dict() == d


@pytest.mark.parametrize("bad, key", [
    ({"status": "great"}, "status"),
    ({"status": "ok", "energy_kind": "guessed"}, "energy_kind"),
    ({"status": "ok", "energy_per_1k_wh": {"gross": "1.0"}}, "energy_per_1k_wh.gross"),
    ({"status": "ok", "flags": "negative_net"}, "flags"),
    ({"status": "ok", "attribution": {"server_j": 1.0}}, "attribution"),
])
def test_load_summary_refuses_values_that_would_mislead(bad, key):
    with pytest.raises(SchemaError, match=key):
        LoadSummary.from_dict(bad)


def test_training_result_schema():
    r = TrainingResult.from_dict({"variant": "v0", "run_id": "r", "status": "ok", "energy_kind": "replayed",
                                  "energy_kwh": {"total": 1e-3}, "mcc": 0.1, "class_balance": {"1": 3}})
    d = r.to_dict()
    assert d["class_balance"] == {"1": 3} and d["pair_accuracy"] is None and d["energy_kind"] == "replayed"
    with pytest.raises(SchemaError, match="energy_kwh.total"):
        TrainingResult.from_dict({"status": "ok", "energy_kwh": {"total": "lots"}})


def test_metrics_known_values():
    # the constant "vulnerable" classifier on a balanced set: F1 2/3, MCC 0, at chance
    m = classification_metrics([1, 0, 1, 0], [1, 1, 1, 1])
    assert m["f1"] == pytest.approx(2 / 3) and m["mcc"] == 0.0 and m["baseline_f1"] == pytest.approx(2 / 3)
    assert at_chance(m["mcc"]) and not at_chance(0.3) and at_chance(0.3, [-0.1, 0.6]) and at_chance(None) is None
    assert baseline_f1([1, 0, 0, 0]) == pytest.approx(0.4) and baseline_f1([]) is None
    # a pair counts once however often its members were scored
    acc, n = pair_accuracy([1, 0, 1, 0, 1, 0], [2.0, 1.0, 2.0, 1.0, 0.0, 0.5], ["a", "a", "a", "a", "b", "b"])
    assert (acc, n) == (0.5, 2)
