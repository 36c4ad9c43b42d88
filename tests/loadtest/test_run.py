"""The orchestrator end to end as real processes: the power sidecar (estimate meter), a real
server (``python -m serving.serve --engine pytorch`` on the tiny artifact), real Locust headless.

Durations are a few seconds; nothing here asserts on timing (the machine is shared and noisy).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from loadtest.run import RunConfig, run
from loadtest.shapes import LoadSpec
from study.paths import Paths
from study.process import Launched, free_port

REPO = Path(__file__).resolve().parents[2]

# docs/interfaces.md: every key of a summary.json (top level and nested).
TOP_KEYS = {
    "status", "failure_reason", "run_id", "engine", "variant", "format", "model", "load",
    "requests", "throughput_rps", "latency_ms", "served", "energy", "energy_per_1k_wh",
    "j_per_request", "co2_per_1k_g", "country", "grid_gco2_per_kwh", "energy_source",
    "energy_kind", "client_cpu", "environment", "n_repeats", "ci95", "repeats",
}
NESTED = {
    "load": {"model", "users", "rps", "duration_s", "workers", "warmup_s"},
    "requests": {"ok", "failed", "errors", "server_counted"},
    "latency_ms": {"mean", "p50", "p90", "p95", "p99"},
    "served": {"accuracy", "f1", "precision", "recall", "n_scored"},
    "energy": {"system", "idle", "inference"},
    "energy_per_1k_wh": {"gross", "net"},
    "j_per_request": {"gross", "net"},
    "co2_per_1k_g": {"gross", "net"},
    "client_cpu": {"mean_percent", "max_percent"},
}
RECORD_KEYS = {"name", "start_unix_s", "end_unix_s", "duration_s", "gross_j", "idle_w", "net_j",
               "source", "kind"}


def check_schema(s: dict) -> None:
    assert TOP_KEYS <= set(s), f"missing: {TOP_KEYS - set(s)}"
    for key, sub in NESTED.items():
        assert sub <= set(s[key]), f"{key} missing {sub - set(s[key])}"


def _cfg(artifacts_root: Path, tmp_path: Path, **kw) -> RunConfig:
    base = dict(
        engine="pytorch", artifacts_dir=str(artifacts_root), results_dir=str(tmp_path),
        specs=[LoadSpec(users=4)], duration_s=4, idle_s=1, warmup_s=1, meter="estimate",
        run_id="t", progress=False, server_args=["--threads", "1"],
    )
    base.update(kw)
    return RunConfig(**base)


def assert_measured(s: dict) -> None:
    """The run worked: ``ok``, or ``degraded`` only because this shared machine drew less in
    the steady window than in its idle baseline (another tenant's load moved the baseline)."""
    why = (s["failure_reason"], s.get("flags"), s.get("warnings"))
    assert s["status"] in ("ok", "degraded"), why
    if s["status"] == "degraded":
        assert set(s["flags"]) & {"partial_coverage", "negative_net"} == {"negative_net"}, why


def test_closed_loop_run_writes_complete_summary(artifacts_root, tmp_path):
    (run_dir, s), = run(_cfg(artifacts_root, tmp_path))
    assert run_dir == tmp_path / "load" / "pytorch__v0" / "t"
    assert_measured(s)
    check_schema(s)
    rep = s["repeats"][0]
    check_schema({**rep, "repeats": []})
    for name in ("system", "idle", "inference"):
        assert RECORD_KEYS <= set(rep["energy"][name]), name
        assert rep["energy"][name]["kind"] == "estimated"
        assert rep["energy"][name]["gross_j"] > 0
    assert s["energy_kind"] == "estimated" and s["energy_source"] == "estimate"
    assert s["requests"]["ok"] > 0 and s["requests"]["failed"] == 0
    # Requests counted by the client equal those counted by the server's metrics.
    assert s["requests"]["server_counted"] == s["requests"]["ok"]
    inf = rep["energy"]["inference"]
    assert s["energy_per_1k_wh"]["gross"] == pytest.approx(
        inf["gross_j"] / s["requests"]["ok"] * 1000 / 3600, rel=1e-9)
    idle = rep["energy"]["idle"]  # the baseline is power over the time samples covered, per device
    assert inf["idle_w"] == pytest.approx(sum(idle["per_device_j"][d] / idle["per_device_covered_s"][d]
                                              for d in idle["per_device_j"]))
    assert s["load"]["users"] == 4 and s["load"]["model"] == "closed"
    assert s["served"]["n_requests_scored"] == s["requests"]["ok"]  # every answer scored
    assert 0 < s["served"]["n_scored"] <= s["requests"]["ok"]  # each distinct function once
    names = {m for m in rep["marks"]}
    assert {"system_start", "ready", "idle_start", "idle_end", "warmup_start", "steady_start",
            "steady_end"} <= names
    rd = run_dir / "repeat-1"
    for f in ("power.csv", "power.marks.csv", "summary.json", "locust-steady_stats.csv",
              "server.log"):
        assert (rd / f).is_file(), f
    assert list((rd / "requests").glob("requests-steady-*.csv"))
    assert json.loads((rd / "summary.json").read_text())["status"] == s["status"]
    # Attribution: server + client + rest = gross; the server is a part of the machine.
    att, e = s["attribution"], rep["energy"]["inference"]
    assert att["server_cpu_s"] > 0 and att["client_cpu_s"] > 0
    assert att["server_j"] + att["client_j"] + att["rest_j"] == pytest.approx(e["gross_j"], rel=1e-2)
    assert 0 < att["server_j"] < e["gross_j"] and 0 < att["server_share"] < 1
    assert s["energy_per_1k_wh"]["server"] < s["energy_per_1k_wh"]["gross"]
    assert {"settle_start", "settle_end"} <= names
    assert s["served"]["mcc"] is not None and s["served"]["baseline_f1"] is not None


def test_open_loop_run_reports_achieved_rate_and_lateness(artifacts_root, tmp_path):
    (_, s), = run(_cfg(artifacts_root, tmp_path, specs=[LoadSpec(rps=20.0, pool=16)],
                       duration_s=3, idle_s=1, warmup_s=0, run_id="open"))
    assert_measured(s)
    check_schema(s)
    ol = s["open_loop"]
    assert s["load"]["model"] == "open" and s["load"]["rps"] == 20.0 and s["load"]["pool"] == 16
    assert ol["n_arrivals"] == s["requests"]["ok"] + s["requests"]["failed"]
    assert ol["achieved_rps"] > 0 and 0 <= ol["late_fraction"] <= 1
    assert s["latency_from_intended_ms"]["p50"] >= 0
    assert s["requests"]["server_counted"] == s["requests"]["ok"]


def test_closed_loop_users_wait_the_retry_after_of_a_503(artifacts_root, tmp_path):
    """A server that sheds (one row per batch, 300 ms each, 50 ms bound): closed-loop users wait
    the 503's Retry-After (1 s) instead of spinning, so 8 users over 4 s get a few 503s each,
    not the thousands an immediate resend would make."""
    (_, s), = run(_cfg(artifacts_root, tmp_path, specs=[LoadSpec(users=8)], warmup_s=0,
                       max_error_rate=1.0, run_id="shed",
                       server_args=["--threads", "1", "--max-batch-size", "1", "--batch-delay-ms",
                                    "300", "--max-queue-wait-ms", "50"]))
    req = s["requests"]
    assert req["errors"].get("http 503", 0) == req["failed"] > 0, req
    assert req["failed"] <= 8 * (4 + 2), req  # at most one per user per second, plus slack
    assert req["ok"] > 0 and req["server_counted"] == req["ok"] + req["failed"]


def test_server_killed_mid_run_is_marked_failed_without_traceback(artifacts_root, tmp_path):
    run_dir = Paths.from_env(results=tmp_path).load_run("pytorch", "v0", "killed")
    cmd = [sys.executable, "-m", "loadtest.run", "--engine", "pytorch", "--artifacts-dir",
           str(artifacts_root), "--results-dir", str(tmp_path), "--users", "4", "--duration", "30",
           "--idle", "1", "--warmup", "1", "--meter", "estimate", "--run-id", "killed",
           "--no-progress", "--server-arg=--threads=1"]
    log = tmp_path / "loadtest.log"
    proc = Launched(cmd, name="loadtest.run", log=log, env=os.environ.copy(), cwd=REPO).start()
    state = run_dir / "repeat-1" / "state.json"
    deadline = time.monotonic() + 240
    pid = None
    while time.monotonic() < deadline and proc.alive():
        if state.exists():
            st = json.loads(state.read_text())
            if st["phase"] == "steady":
                pid = st["server_pid"]
                break
        time.sleep(0.2)
    assert pid, "the run never reached its steady window"
    # Kill once steady-phase requests are on disk (Locust's start-up time varies with load).
    reqs = state.parent / "requests"
    while time.monotonic() < deadline:
        rows = sum(len(p.read_text().splitlines()) - 1 for p in reqs.glob("requests-steady-*.csv"))
        if rows >= 5:
            break
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    rc = proc.wait(timeout_s=120)
    proc.stop()
    text = log.read_text()
    assert rc == 1
    assert "Traceback" not in text
    assert "server exited with code -9" in text
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "failed" and "server exited with code -9" in s["failure_reason"]
    check_schema(s)
    rep = s["repeats"][0]
    assert rep["status"] == "failed"
    assert rep["requests"]["ok"] > 0  # partial data kept
    assert rep["energy"]["inference"]["gross_j"] > 0
    assert (run_dir / "repeat-1" / "power.csv").stat().st_size > 0
    assert s["energy_per_1k_wh"]["gross"] is None  # a failed repeat is never averaged in


@pytest.mark.slow
def test_master_worker_mode_and_request_count(artifacts_root, tmp_path):
    (_, s), = run(_cfg(artifacts_root, tmp_path, workers=1, idle_s=1, warmup_s=0, requests=60,
                       duration_s=5, run_id="mw"))
    assert_measured(s)
    check_schema(s)
    assert s["load"]["workers"] == 1
    assert s["requests"]["ok"] >= 60
    assert s["client_cpu"]["n_processes"] == 2  # master + one worker
    assert s["requests"]["server_counted"] == s["requests"]["ok"]


@pytest.fixture
def running_server(artifacts_root, tmp_path):
    """A pytorch server started outside the orchestrator (for --url attach mode)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with Launched([sys.executable, "-m", "serving.serve", "--engine", "pytorch", "--artifacts-dir",
                   str(artifacts_root), "--port", str(port), "--threads", "1"],
                  name="server", log=tmp_path / "server.log", cwd=REPO) as server:
        server.wait_ready(url=url + "/v2/health/ready", timeout_s=120)
        yield url


def test_sweep_attached_to_a_running_server(running_server, artifacts_root, tmp_path):
    out = run(_cfg(artifacts_root, tmp_path, url=running_server, specs=[LoadSpec(users=1), LoadSpec(users=3)],
                   duration_s=2, idle_s=1, warmup_s=0, run_id="sw"))
    assert [d.name for d, _ in out] == ["sw-users1", "sw-users3"]
    for _, s in out:
        assert_measured(s)
        check_schema(s)
        assert s["energy"]["system"] is None  # attached: the start-up was not ours to measure
        assert s["energy"]["inference"]["gross_j"] > 0
        assert s["requests"]["server_counted"] == s["requests"]["ok"]
        assert any("attached" in w for w in s["warnings"])
    assert [s["load"]["users"] for _, s in out] == [1, 3]


def test_server_never_ready_is_a_failed_repeat_with_every_field(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (_, s), = run(RunConfig(engine="onnxruntime", url=url, results_dir=str(tmp_path), duration_s=2,
                            idle_s=0, warmup_s=0, meter="estimate", startup_timeout_s=2,
                            run_id="dead", progress=False))
    check_schema(s)
    assert s["status"] == "failed"
    assert "server not ready after 2 s" in s["failure_reason"]
    rep = s["repeats"][0]
    assert rep["requests"]["ok"] == 0 and rep["energy_per_1k_wh"] == {"gross": None, "net": None, "server": None}
    assert (Paths.from_env(results=tmp_path).load_run("onnxruntime", "v0", "dead") / "repeat-1"
            / "summary.json").is_file()
