"""The overload check: its verdict on known summaries, and one short real run (three load tests
of the tiny pytorch server). The real run asserts what the check records, never whether this
shared machine met the targets (that is a benchmark's business: docs/serving.md)."""

from __future__ import annotations

import json

import pytest

from loadtest.overload import format_report, main, verdict


def _summary(thr=100.0, p99=30.0, ok=100, failed=0, counted=None, errors=None, status="ok", **kw):
    return {"status": status, "throughput_rps": thr, "latency_ms": {"p50": p99 / 2, "p99": p99},
            "requests": {"ok": ok, "failed": failed, "errors": errors or {},
                         "server_counted": ok + failed if counted is None else counted},
            "load": {"users": 4}, **kw}


def _targets(rows):
    return {r["target"]: r for r in rows}


def test_targets_met_and_not_met():
    cap, light = _summary(thr=300.0), _summary(p99=30.0)
    good = _summary(thr=250.0, p99=80.0, ok=15000, failed=45000, errors={"http 503": 45000},
                    open_loop={"goodput_rps": 250.0})
    t = _targets(verdict(cap, light, good, min_goodput=0.8, max_p99_ratio=3.0))
    assert t["goodput ÷ capacity"]["value"] == pytest.approx(250 / 300)
    assert all(r["met"] for r in t.values()), t
    slow = _summary(thr=200.0, p99=200.0, ok=12000, failed=1, counted=12000,
                    errors={"http 503": 1}, open_loop={"goodput_rps": 200.0})
    t = _targets(verdict(cap, light, slow, min_goodput=0.8, max_p99_ratio=3.0))
    assert t["goodput ÷ capacity"]["met"] is False
    assert t["accepted p99 ÷ light-load p99"]["value"] == pytest.approx(200 / 30)
    assert t["accepted p99 ÷ light-load p99"]["met"] is False
    assert t["client count = server count"]["met"] is False  # 12,001 sent, 12,000 counted
    assert t["server alive"]["met"] is True


def test_a_dead_server_and_missing_figures():
    dead = _summary(status="failed", errors={"connection: ConnectionRefusedError": 10},
                    counted=None, open_loop={})
    dead["latency_ms"] = None
    t = _targets(verdict(_summary(), _summary(), dead, min_goodput=0.8, max_p99_ratio=3.0))
    assert t["server alive"]["met"] is False
    assert t["accepted p99 ÷ light-load p99"]["met"] is None  # not measured, not "met"
    no_cap = _targets(verdict(_summary(thr=None), _summary(), _summary(), min_goodput=0.8,
                              max_p99_ratio=3.0))
    assert no_cap["goodput ÷ capacity"]["met"] is None


def test_report_says_not_met_and_not_measured():
    cap, light, flood = _summary(), _summary(), _summary(p99=500.0, open_loop={"goodput_rps": 90})
    flood["load"] = {"rps": 400.0}
    result = {"engine": "pytorch", "variant": "v0", "created_utc": "20261202T000000Z",
              "machine": "test box", "factor": 4.0, "target_rps": 400.0, "pool": 1000,
              "duration_s": 60.0, "runs": {"capacity": cap, "light": light, "open": flood},
              "targets": verdict(cap, light, flood, min_goodput=0.8, max_p99_ratio=3.0)}
    md = format_report(result)
    assert "| open | 400 req/s open |" in md and "**NOT met**" in md and "test box" in md


@pytest.mark.slow
def test_short_real_overload_check_writes_its_verdict(artifacts_root, tmp_path, capsys):
    rc = main(["--engine", "pytorch", "--capacity-users", "2", "--light-users", "1",
               "--factor", "2", "--pool", "20", "--duration", "3", "--closed-duration", "2",
               "--warmup", "0", "--idle", "1", "--meter", "estimate", "--no-progress",
               "--server-arg=--threads=1", "--artifacts-dir", str(artifacts_root),
               "--results-dir", str(tmp_path)])
    assert rc in (0, 1)  # 1 = a target not met on this shared machine; still a full record
    out = json.loads((tmp_path / "bench" / "overload__pytorch__v0.json").read_text())
    assert set(out["runs"]) == {"capacity", "light", "open"}
    assert out["runs"]["open"]["load"]["rps"] == pytest.approx(2 * out["runs"]["capacity"]["throughput_rps"])
    assert out["runs"]["open"]["load"]["pool"] == 20
    assert [r["met"] is not None for r in out["targets"]] == [True] * 4
    assert rc == (0 if all(r["met"] for r in out["targets"]) else 1)
    assert (tmp_path / "bench" / "overload__pytorch__v0.md").read_text().startswith("Overload check")
    assert "| target | value | bound |" in capsys.readouterr().out
