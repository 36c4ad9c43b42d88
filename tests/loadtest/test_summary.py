"""Pure metrics of a load run on known inputs (STYLE.md §8)."""

from __future__ import annotations

import math

import pytest

from energy.base import Reading
from energy.trace import TraceWriter, record_from_csv
from loadtest.records import RequestRecord, in_window, read_request_records, write_request_records
from loadtest.repeats import aggregate_repeats
from loadtest.summary import (
    energy_per_1k,
    energy_per_1k_wh,
    failure_reason,
    j_per_request,
    latency_summary,
    mean_ci95,
    percentile,
    request_stats,
    served_scores,
)
from study.stats import t_crit  # noqa: E402

T0 = 1_700_000_000.0


def _constant_trace(path, watts: float, t_from: float, t_to: float, step_s: float = 0.1):
    """A replayed power trace: ``watts`` constant, one sample per ``step_s`` (power only)."""
    n = round((t_to - t_from) / step_s)
    with TraceWriter(path) as w:
        w.write(
            Reading(t_from + i * step_s, "cpu", watts, None, "replay", "estimated")
            for i in range(n + 1)
        )


def _records(n: int, t_from: float, t_to: float) -> list[RequestRecord]:
    """``n`` successful synthetic requests completing evenly inside ``(t_from, t_to)``."""
    dt = (t_to - t_from) / n
    out = []
    for i in range(n):
        end = t_from + (i + 0.5) * dt
        out.append(RequestRecord(end - 0.004, end, True, "", 1, (i % 2,), (i % 2,)))
    return out


def test_energy_per_1k_constant_200w_10s_500_requests(tmp_path):
    power = tmp_path / "power.csv"
    _constant_trace(power, 200.0, T0 - 2.0, T0 + 12.0)
    reqs = tmp_path / "requests.csv"
    write_request_records(reqs, _records(500, T0, T0 + 10.0) + _records(50, T0 + 10.5, T0 + 11.5))
    recs = in_window(read_request_records([reqs]), T0, T0 + 10.0)
    n_ok = sum(r.ok for r in recs)
    assert n_ok == 500

    gross = record_from_csv(power, T0, T0 + 10.0, name="inference")
    assert gross.gross_j == pytest.approx(2000.0, rel=1e-9)
    per_1k = energy_per_1k(gross, n_ok)
    assert per_1k["gross"] == pytest.approx(4000.0 / 3600.0, rel=1e-9)  # 1.111 Wh
    assert per_1k["net"] is None  # no idle baseline given → no net, never a made-up one

    rec = record_from_csv(power, T0, T0 + 10.0, name="inference", idle_w=50.0)
    per_1k = energy_per_1k(rec, n_ok)
    assert per_1k["gross"] == pytest.approx(1.1111111111111112, rel=1e-9)
    assert per_1k["net"] == pytest.approx(3000.0 / 3600.0, rel=1e-9)  # 0.833 Wh
    jpr = j_per_request(rec, n_ok)
    assert jpr == {"gross": pytest.approx(4.0, rel=1e-9), "net": pytest.approx(3.0, rel=1e-9)}


def test_energy_per_1k_edge_cases():
    assert energy_per_1k_wh(None, 10) is None
    assert energy_per_1k_wh(100.0, 0) is None
    assert energy_per_1k(None, 5) == {"gross": None, "net": None}
    assert energy_per_1k_wh(3600.0, 1000) == pytest.approx(1.0)


def test_percentile_matches_linear_interpolation():
    xs = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(xs, 0) == 15.0
    assert percentile(xs, 100) == 50.0
    assert percentile(xs, 50) == 35.0
    assert percentile(xs, 40) == pytest.approx(29.0)  # numpy.percentile(xs, 40)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="allowed: 0..100"):
        percentile(xs, 101)
    s = latency_summary([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["p50"] == 2.5 and s["p99"] == pytest.approx(3.97)


def test_mean_ci95_student_t():
    m, ci = mean_ci95([10.0, 12.0, 14.0])
    half = 4.302652730 * 2.0 / math.sqrt(3)  # t(0.975, 2) × sd / √n
    assert m == 12.0
    assert ci == [pytest.approx(12.0 - half), pytest.approx(12.0 + half)]
    assert mean_ci95([5.0]) == (5.0, None)
    assert mean_ci95([]) == (None, None)
    assert t_crit(30) == pytest.approx(2.042272456)
    assert t_crit(60) == pytest.approx(2.000297822, abs=1e-6)
    assert t_crit(10_000) == pytest.approx(1.960201, abs=1e-5)


def test_served_scores_known_confusion():
    # tp=2, fp=1, fn=1, tn=4, in records of two items each (one failed request is not scored)
    pairs = [(1, 1), (1, 1), (0, 1), (1, 0), (0, 0), (0, 0), (0, 0), (0, 0)]
    recs = [RequestRecord(0.0, 0.01, True, "", 2, (a[0], b[0]), (a[1], b[1]))
            for a, b in zip(pairs[::2], pairs[1::2], strict=True)]
    recs.append(RequestRecord(0.0, 0.01, False, "http 503", 2, (1, 1), ()))
    s = served_scores(recs)
    assert s["n_scored"] == 8
    assert s["accuracy"] == pytest.approx(6 / 8)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    # MCC = (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (8 − 1) / sqrt(3·3·5·5)
    assert s["mcc"] == pytest.approx(7 / 15)
    assert s["baseline_f1"] == pytest.approx(2 * (3 / 8) / (1 + 3 / 8))
    assert s["roc_auc"] is None and s["pair_accuracy"] is None  # no scores in these records
    none = served_scores([RequestRecord(0.0, 0.01, True, "", 2, (0, 0), (0, 0))])
    assert none["f1"] == 0.0 and none["accuracy"] == 1.0
    assert served_scores([])["accuracy"] is None


def test_served_scores_with_scores_and_pairs():
    # pair a: vulnerable scores 2.0 > fix 1.0 (won); pair b: vulnerable 0.1 < fix 0.5 (lost)
    recs = [
        RequestRecord(0.0, 0.01, True, "", 2, (1, 0), (1, 1), scores=(2.0, 1.0), pairs=("a", "a")),
        RequestRecord(0.0, 0.01, True, "", 2, (1, 0), (0, 1), scores=(0.1, 0.5), pairs=("b", "b")),
        RequestRecord(0.0, 0.01, True, "", 1, (0,), (0,), scores=(-3.0,), pairs=("c",)),  # no partner
    ]
    s = served_scores(recs)
    assert s["pair_accuracy"] == pytest.approx(0.5) and s["n_pairs"] == 2
    # the same function served again counts once (its last answer), however often it was sent
    again = served_scores([*recs, recs[0], recs[0]])
    assert again["n_scored"] == 5 and again["n_requests_scored"] == 9
    assert again["accuracy"] == s["accuracy"] and again["roc_auc"] == s["roc_auc"]
    # positives {2.0, 0.1} vs negatives {1.0, 0.5, -3.0}: 3 + 1 of 6 pairs ranked right
    assert s["roc_auc"] == pytest.approx(4 / 6)


def test_request_stats_counts_errors_and_open_loop_lateness():
    recs = [
        RequestRecord(0.0, 0.010, True, "", 2, (1, 0), (1, 1), target_unix_s=0.0),
        RequestRecord(0.5, 0.520, True, "", 2, (0, 0), (0, 0), target_unix_s=0.45),  # 50 ms late
        RequestRecord(1.0, 1.001, False, "http 503", 2, (1, 1), (), target_unix_s=1.0),
        RequestRecord(1.5, 1.501, False, "connection: ConnectionRefusedError", 2, (0, 1), (),
                      target_unix_s=1.5),
    ]
    s = request_stats(recs, duration_s=2.0, late_threshold_ms=10.0)
    assert s["requests"] == {
        "ok": 2, "failed": 2,
        "errors": {"connection: ConnectionRefusedError": 1, "http 503": 1},
    }
    assert s["throughput_rps"] == 1.0
    assert s["items_ok"] == 4
    assert s["served"]["n_scored"] == 4 and s["served"]["accuracy"] == pytest.approx(0.75)
    assert s["latency_ms"]["p50"] == pytest.approx(15.0)  # only successful requests
    assert s["open_loop"]["n_late"] == 1 and s["open_loop"]["achieved_rps"] == 2.0
    assert s["latency_from_intended_ms"]["p99"] == pytest.approx(69.4)  # 10 ms and 70 ms from intended
    closed = request_stats([RequestRecord(0.0, 0.1, True, "", 1, (1,), (1,))], duration_s=1.0)
    assert closed["open_loop"] is None and closed["latency_from_intended_ms"] is None


def test_failure_rules():
    assert failure_reason(n_ok=100, n_failed=5) is None  # 4.8 % ≤ 5 %
    r = failure_reason(n_ok=90, n_failed=10, errors={"http 503": 10})
    assert "error rate 10.0% exceeds the 5.0% threshold" in r and "http 503" in r
    died = failure_reason(n_ok=50, n_failed=3, server_failure="server exited with code -9",
                          errors={"connection: ConnectionRefusedError": 3})
    assert died.startswith("server exited with code -9") and "ConnectionRefusedError" in died
    assert "no successful request" in failure_reason(n_ok=0, n_failed=0)
    assert "no energy" in failure_reason(n_ok=10, n_failed=0, inference_energy_j=None)
    assert failure_reason(n_ok=80, n_failed=20, max_error_rate=0.5) is None
    with pytest.raises(ValueError, match="max_error_rate"):
        failure_reason(n_ok=1, n_failed=0, max_error_rate=2.0)


def _rep(status, e, thr, reason=None):
    return {
        "status": status, "failure_reason": reason, "engine": "onnxruntime",
        "requests": {"ok": 100, "failed": 0, "errors": {"http 503": 2} if e > 1.5 else {}},
        "energy_per_1k_wh": {"gross": e, "net": e / 2},
        "throughput_rps": thr, "window": {"start_unix_s": 5.0},
    }


def test_aggregate_repeats_mean_ci_and_failed_never_averaged():
    reps = [_rep("ok", 1.0, 10.0), _rep("ok", 2.0, 20.0), _rep("failed", 99.0, 1.0, "server died")]
    top = aggregate_repeats(reps)
    assert top["energy_per_1k_wh"]["gross"] == pytest.approx(1.5)  # failed repeat left out
    assert top["throughput_rps"] == pytest.approx(15.0)
    lo, hi = top["ci95"]["energy_per_1k_wh.gross"]
    assert lo < 1.5 < hi
    assert top["status"] == "failed" and "repeat 3: server died" in top["failure_reason"]
    assert top["n_repeats"] == 3 and top["n_ok_repeats"] == 2 and top["n_failed_repeats"] == 1
    assert top["repeats"][2]["energy_per_1k_wh"]["gross"] == 99.0  # kept, not averaged
    assert top["requests"]["errors"] == {"http 503": 1.0}  # mean over ok repeats
    assert top["window"]["start_unix_s"] == 5.0
    assert top["requests"]["ok"] == 100 and isinstance(top["requests"]["ok"], int)  # not 100.0
    ok = aggregate_repeats([_rep("ok", 1.0, 10.0)])
    assert ok["status"] == "ok" and ok["failure_reason"] is None
    assert ok["ci95"]["energy_per_1k_wh.gross"] is None  # one repeat: no CI
    dead = aggregate_repeats([_rep("failed", 3.0, 1.0, "x")])
    assert dead["energy_per_1k_wh"]["gross"] is None and dead["engine"] == "onnxruntime"


def test_aggregate_repeats_keeps_instants_and_drops_the_repeat_index():
    reps = [{**_rep("ok", 1.0, 10.0), "repeat": k, "marks": {"steady_start": 100.0 * k}}
            for k in (1, 2, 3)]
    top = aggregate_repeats(reps)
    assert top["marks"] == {"steady_start": 100.0}  # repeat 1's instants, not a mean of times
    assert "repeat" not in top  # the top level is no repeat; each one keeps its index
    assert [r["repeat"] for r in top["repeats"]] == [1, 2, 3]


def test_torn_last_line_is_skipped_not_counted_as_a_failure(tmp_path):
    path = tmp_path / "requests-steady-1.csv"
    write_request_records(path, _records(3, T0, T0 + 1.0))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{T0 + 1.1:.6f},{T0 + 1.2:.6f},100.0")  # a process killed mid-row
    recs = read_request_records([path])
    assert len(recs) == 3 and all(r.ok for r in recs)


def test_aggregate_repeats_labels_a_mean_over_different_meters():
    reps = [{**_rep("ok", 1.0, 10.0), "energy_kind": "measured", "energy_source": "rapl"},
            {**_rep("ok", 2.0, 10.0), "energy_kind": "estimated", "energy_source": "estimate"}]
    top = aggregate_repeats(reps)
    assert top["energy_kind"] == "estimated" and top["energy_source"] == "estimate+rapl"
    assert any("measured differently" in w for w in top["warnings"])
    same = aggregate_repeats([reps[0], {**reps[0], "energy_per_1k_wh": {"gross": 3.0, "net": 1.0}}])
    assert same["energy_kind"] == "measured" and same["energy_source"] == "rapl"


def _inference(gross_j: float, coverage: float = 1.0, net_j: float | None = None):
    from energy.base import EnergyRecord

    return EnergyRecord(name="inference", start_unix_s=T0, end_unix_s=T0 + 10, duration_s=10.0,
                        gross_j=gross_j, idle_w=1.0, net_j=gross_j - 10 if net_j is None else net_j,
                        source="estimate", kind="estimated", per_device_j={"cpu": gross_j},
                        coverage=coverage)


def _summary(records, inference, load=None, **kw):
    from loadtest.summary import compose_repeat_summary

    return compose_repeat_summary(meta={"engine": "onnxruntime"}, load=load or {"users": 4},
                                  records=records, window=(T0, T0 + 10.0),
                                  energy={"inference": inference}, **kw)


def test_open_loop_below_target_is_flagged_and_latency_is_from_intended_send():
    # 10 s, target 100 req/s, 20 answered (each sent 50 ms late, served in 10 ms).
    recs = [RequestRecord(T0 + i * 0.5 + 0.05, T0 + i * 0.5 + 0.06, True, "", 1, (1,), (1,),
                          target_unix_s=T0 + i * 0.5) for i in range(20)]
    s = _summary(recs, _inference(100.0), load={"rps": 100.0, "pool": 10})
    assert "target_rate_not_achieved" in s["flags"]
    assert any(w.startswith("target_rate_not_achieved: 2.0 req/s answered of 100") for w in s["warnings"])
    assert s["open_loop"]["target_rps"] == 100.0 and s["open_loop"]["achieved_fraction"] == pytest.approx(0.02)
    assert s["latency_basis"] == "intended"
    assert s["latency_ms"]["p50"] == pytest.approx(60.0, abs=0.01)
    assert s["latency_from_sent_ms"]["p50"] == pytest.approx(10.0, abs=0.01)
    closed = _summary([RequestRecord(T0 + 1, T0 + 1.01, True, "", 1, (1,), (1,))], _inference(10.0))
    assert closed["latency_basis"] == "sent" and "target_rate_not_achieved" not in closed["flags"]


def test_partial_coverage_or_negative_net_degrades_a_repeat_and_it_is_not_averaged():
    recs = [RequestRecord(T0 + i, T0 + i + 0.01, True, "", 1, (1,), (1,)) for i in range(5)]
    part = _summary(recs, _inference(100.0, coverage=0.9))
    assert part["status"] == "degraded" and "partial_coverage" in part["flags"]
    neg = _summary(recs, _inference(5.0, net_j=-5.0))
    assert neg["status"] == "degraded" and "negative_net" in neg["flags"]
    good = _summary(recs, _inference(50.0), server_counted=5,
                    attribution={"server_j": 20.0, "server_share": 0.4, "method": "cpu-time"})
    assert good["status"] == "ok" and good["flags"] == []
    assert good["energy_per_1k_wh"]["server"] == pytest.approx(20.0 / 5 * 1000 / 3600)
    top = aggregate_repeats([good, part])
    assert top["status"] == "ok" and top["n_degraded_repeats"] == 1
    assert top["energy_per_1k_wh"]["gross"] == good["energy_per_1k_wh"]["gross"]
    only = aggregate_repeats([part, neg])
    assert only["status"] == "degraded"
    mismatch = _summary(recs, _inference(50.0), server_counted=7)
    assert "count_mismatch" in mismatch["flags"]


def test_aggregate_repeats_of_a_replay_and_a_measurement_is_replayed():
    reps = [{**_rep("ok", 1.0, 10.0), "energy_kind": "measured", "energy_source": "rapl"},
            {**_rep("ok", 2.0, 10.0), "energy_kind": "replayed", "energy_source": "replay"}]
    top = aggregate_repeats(reps)
    assert top["energy_kind"] == "replayed" and top["energy_source"] == "rapl+replay"
