"""The sidecar as a real process: replay and estimate meters, marks over loopback HTTP and a
mark file, SIGKILL, and the CSV it leaves behind read back by energy.trace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from energy.sidecar import Sidecar, post_mark
from energy.trace import read_marks, read_readings, record_from_csv
from study.process import Launched

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _start(out: Path, *args: str) -> tuple[Launched, int]:
    """``python -m energy.sidecar`` by hand (not :class:`Sidecar`), output in ``<out>.log``."""
    port_file = out.with_suffix(".port")
    proc = Launched(
        [sys.executable, "-m", "energy.sidecar", "--out", str(out), "--interval-s", "0.05",
         "--mark-port", "0", "--port-file", str(port_file), *args],
        name="sidecar", log=out.with_suffix(".log"), cwd=REPO, env=ENV,
    ).start()
    proc.wait_ready(path=port_file, timeout_s=60, poll_s=0.05)
    return proc, int(port_file.read_text())


def _rows_after(out: Path, n: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if out.exists() and sum(1 for _ in open(out)) > n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{out} did not reach {n} rows")


def test_help_exits_zero():
    r = subprocess.run([sys.executable, "-m", "energy.sidecar", "--help"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "--mark-port" in r.stdout and "--interval-s" in r.stdout


def test_invalid_meter_exits_2_with_the_valid_names(tmp_path):
    r = subprocess.run([sys.executable, "-m", "energy.sidecar", "--out", str(tmp_path / "p.csv"),
                        "--meter", "bogus"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown meter 'bogus'" in r.stderr and "estimate" in r.stderr and "replay:<power.csv>" in r.stderr


def test_mark_port_in_use_exits_2_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "energy.sidecar", "--out", str(tmp_path / "p.csv"),
                            "--meter", "estimate", "--mark-port", str(port)],
                           cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "energy.sidecar:" in r.stderr


def test_replay_sidecar_marks_sigkill_and_valid_csv(tmp_path, constant_200w_csv):
    out = tmp_path / "power.csv"
    proc, port = _start(out, "--meter", f"replay:{constant_200w_csv}")
    try:
        _rows_after(out, 5)
        start = post_mark("steady_start", port=port)
        assert start["name"] == "steady_start"
        time.sleep(1.0)
        post_mark("steady_end", port=port)
        # Bad marks are refused with a message, and the sidecar keeps going.
        req = urllib.request.Request(f"http://127.0.0.1:{port}/mark", data=b'{"nam": 1}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=5)
        assert ei.value.code == 400 and "name" in json.loads(ei.value.read())["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/marks", timeout=5) as resp:
            assert [m["name"] for m in json.loads(resp.read())] == ["steady_start", "steady_end"]
        time.sleep(0.3)
    finally:
        proc.signal(signal.SIGKILL)
        proc.wait(timeout_s=30)
        proc.stop()
    assert proc.returncode == -signal.SIGKILL
    rows = read_readings(out)
    assert len(rows) > 20
    assert {r.source for r in rows} == {"replay"} and {r.device for r in rows} == {"gpu0"}
    assert [n for n, _ in read_marks(out)] == ["steady_start", "steady_end"]
    rec = record_from_csv(out, "steady_start", "steady_end", name="steady")
    assert rec.gross_j / rec.duration_s == pytest.approx(200.0, rel=1e-3)
    assert rec.duration_s > 0 and rec.n_samples > 0
    assert rec.kind == "replayed" and rec.source == "replay"
    assert {r.kind for r in rows} == {"replayed"}  # the sidecar's CSV says so row by row


def test_estimate_sidecar_with_mark_file_and_sigkill(tmp_path):
    out = tmp_path / "est.csv"
    marks_in = tmp_path / "marks.txt"
    proc, port = _start(out, "--meter", "estimate", "--mark-file", str(marks_in), "--pid", str(os.getpid()))
    try:
        _rows_after(out, 5)
        t0 = time.time()
        with open(marks_in, "a") as fh:
            fh.write(f"{t0:.6f},from_file_start\n")
        post_mark("http_mark", port=port)
        end = time.time() + 1.0
        while time.time() < end:
            pass  # some CPU load for the estimate
        with open(marks_in, "a") as fh:
            fh.write("from_file_end\n")  # no timestamp: stamped when the sidecar sees it
        deadline = time.monotonic() + 30
        while len(read_marks(out)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.signal(signal.SIGKILL)
        proc.wait(timeout_s=30)
        proc.stop()
    marks = dict(read_marks(out))
    assert set(marks) == {"from_file_start", "http_mark", "from_file_end"}
    assert marks["from_file_start"] == pytest.approx(t0, abs=1e-5)
    rows = read_readings(out)
    assert {r.device for r in rows} == {"cpu", f"pid:{os.getpid()}"}
    assert {r.kind for r in rows} == {"estimated"}
    rec = record_from_csv(out, "from_file_start", "from_file_end")
    assert rec.kind == "estimated" and rec.source == "estimate"
    assert rec.gross_j is not None and rec.gross_j > 0
    assert rec.per_device_j.keys() == {"cpu"} and f"pid:{os.getpid()}" in rec.cross_checks


def test_sigterm_stops_cleanly_via_launcher(tmp_path, constant_200w_csv, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(REPO)
    out = tmp_path / "launch.csv"
    with Sidecar(out, interval_s=0.05, meter=f"replay:{constant_200w_csv}") as sc:
        _rows_after(out, 3)
        sc.mark("a")
        time.sleep(0.3)
        sc.mark("b")
    assert sc.proc.returncode == 0
    assert "stopped" in sc.log_path.read_text()
    assert record_from_csv(out, "a", "b").gross_j > 0


def test_watched_process_that_exits_becomes_gap_rows_and_sampling_goes_on(tmp_path):
    out = tmp_path / "pid.csv"
    child = Launched([sys.executable, "-c", "import time; time.sleep(0.5)"], name="child").start()
    proc, _port = _start(out, "--meter", "estimate", "--pid", str(child.pid))
    try:
        child.wait(timeout_s=30)  # reaped: its /proc entry is gone, reads of it now fail
        n_after_exit = sum(1 for _ in open(out))
        _rows_after(out, n_after_exit + 20)  # the sidecar kept sampling the machine
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(timeout_s=30)
        proc.stop()
        child.stop()
    err = out.with_suffix(".log").read_text()
    assert proc.returncode == 0
    rows = read_readings(out)
    pid_rows = [r for r in rows if r.device == f"pid:{child.pid}"]
    assert pid_rows and pid_rows[-1].flag == "gap"
    t_gone = next(r.t_unix_s for r in pid_rows if r.flag == "gap")
    assert sum(1 for r in rows if r.device == "cpu" and r.flag == "" and r.t_unix_s > t_gone) >= 5
    assert err.count("went away") == 1  # logged once, not per sample
