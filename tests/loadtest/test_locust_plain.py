"""Plain Locust as its users run it (issue 17): ``locust -f loadtest/locustfile.py --host …`` with
no ``LOADTEST_*`` variables (and no PYTHONPATH), headless and with the web UI, against a real
server of the tiny model; plus the option/figure functions of :mod:`loadtest.live` on known inputs.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import httpx
import pytest

from loadtest import energy_tab, live
from study.process import Launched
from tests.conftest import REPO_ROOT, free_port

LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
LOCUST = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]


def plain_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any LOADTEST_* variable and without PYTHONPATH: what a user
    typing `locust …` in a fresh shell has; its results root (``RESULTS_DIR``, the study's one
    variable for it; a relative root is the repository's) is ``tmp_path/results``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_") and k != "PYTHONPATH"}
    env.pop("ARTIFACTS", None)
    env["RESULTS_DIR"] = str(tmp_path / "results")
    return env


@pytest.fixture(scope="module")
def server(artifacts_root, tmp_path_factory):
    """``serving.serve --engine pytorch`` on the tiny artifact (its metadata names v0)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with Launched([sys.executable, "-m", "serving.serve", "--engine", "pytorch", "--artifacts-dir",
                   str(artifacts_root), "--port", str(port), "--threads", "1", "--no-build"],
                  name="server", log=tmp_path_factory.mktemp("plain_locust") / "server.log") as proc:
        proc.wait_ready(url=url + "/v2/health/ready", timeout_s=120)
        yield url


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_plain_headless_locust_records_the_held_out_split(server, artifacts_root, tmp_path):
    proc = subprocess.run(
        [*LOCUST, "--headless", "-u", "4", "-r", "4", "-t", "5s", "--host", server,
         "--csv", str(tmp_path / "loc"), "--html", str(tmp_path / "report.html")],
        cwd=tmp_path, env=plain_env(tmp_path), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = [r for r in _rows(tmp_path / "loc_stats.csv") if r["Name"] == "Aggregated"][0]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
    (run_dir,) = (tmp_path / "results" / "locust" / "pytorch__v0").iterdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["engine"] == "pytorch" and meta["variant"] == "v0" and meta["resolved_by"] == "server metadata"
    records = [r for p in run_dir.glob("requests-run-*.csv") for r in _rows(p)]
    assert records and all(r["ok"] == "1" for r in records)
    # The functions sent are exactly the served model's held-out test split.
    from training.data import load_split_for_artifact

    test = load_split_for_artifact("test", artifacts_root / "v0" / "model")
    sent = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert [d["text"] for d in sent] == list(test["text"])
    # The Energy figures in Locust's CSV and HTML report, labelled with meter and kind.
    energy = {r["figure"]: r for r in _rows(tmp_path / "loc_energy.csv")}
    gross = energy["Energy per 1k requests, gross"]
    assert float(gross["value"]) > 0 and gross["kind"] in ("measured", "estimated") and gross["meter"]
    acc = energy["Served accuracy so far"]
    assert 0 <= float(acc["value"]) <= 1 and f"{len(records)} ok" in acc["covers"]
    assert "Majority-class baseline accuracy" in energy
    assert "id='gps-energy'" in (tmp_path / "report.html").read_text()
    assert (run_dir / "energy.csv").read_text() == (tmp_path / "loc_energy.csv").read_text()


def test_web_ui_swarm_through_locusts_api_fills_the_energy_tab(server, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Launched([*LOCUST, "--host", server, "--web-host", "127.0.0.1", "--web-port", str(port),
                     "--meter", "estimate"], name="Locust", log=tmp_path / "locust.log", cwd=tmp_path,
                    env=plain_env(tmp_path)).start()
    try:
        proc.wait_ready(url=base + "/", timeout_s=60, poll_s=0.3)
        page = httpx.get(base + "/", timeout=10)
        assert '"extended_tabs": [{"key": "energy", "title": "Energy"}]' in page.text
        assert '"batch"' in page.text and '"request_timeout"' in page.text  # the start form's options
        r = httpx.post(base + "/swarm", data={"user_count": 2, "spawn_rate": 2, "host": server}, timeout=30)
        assert r.json()["success"], r.text
        rows: dict[str, dict] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1.0)
            stats = httpx.get(base + "/stats/requests", timeout=10).json()
            (ext,) = [e for e in stats["extended_stats"] if e["key"] == "energy"]
            rows = {row["figure"]: row for row in ext["data"]}
            if all(rows.get(k, {}).get("value", "n/a") != "n/a" for k in
                   ("Live power", "Energy per 1k requests, gross", "Served accuracy so far")):
                break
        assert rows["Live power"]["value"] != "n/a", rows
        assert rows["Live power"]["meter"] == "estimate" and rows["Live power"]["kind"] == "estimated"
        assert rows["Energy per 1k requests, gross"]["value"] != "n/a", rows
        assert rows["Served accuracy so far"]["kind"] == "measured"
        data = httpx.get(base + "/energy", timeout=10).json()
        figs = {f["key"]: f for f in data["figures"]}
        assert data["variant"] == "v0" and data["requests"]["ok"] > 0
        assert figs["energy"]["value"] > 0 and figs["per1k_gross"]["unit"] == "Wh/1k"
        assert httpx.get(base + "/energy/csv", timeout=10).text.startswith("figure,value,unit,meter,kind")
        httpx.get(base + "/stop", timeout=10)
    finally:
        proc.signal(signal.SIGTERM)
        proc.wait(timeout_s=60)
        proc.stop()
    (run_dir,) = (tmp_path / "results" / "locust" / "pytorch__v0").iterdir()
    assert list(run_dir.glob("requests-run-*.csv")) and (run_dir / "energy.csv").is_file()


def test_locust_options_are_listed_and_validated():
    out = subprocess.run([sys.executable, "-m", "loadtest.live", "--help"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    for flag in ("--requests-file", "--protocol", "--model", "--batch", "--rps", "--pool",
                 "--request-timeout", "LOADTEST_BATCH"):
        assert flag in out, flag
    defaults = Namespace(**{o.dest: o.default for o in live.OPTIONS})
    s = live.settings_from(defaults)
    assert (s.protocol, s.batch, s.rps, s.pool) == ("auto", 1, None, None)
    # The web UI's form sends strings; they are validated like the command line.
    s = live.settings_from(Namespace(**{**vars(defaults), "rps": "12.5", "pool": "8", "batch": "2"}))
    assert (s.rps, s.pool, s.batch) == (12.5, 8, 2)
    for key, bad, msg in (("batch", 0, "--batch=0 is invalid; allowed: an integer >= 1"),
                          ("protocol", "grpc", "--protocol='grpc' is invalid; allowed: auto, oip, vllm"),
                          ("rps", "-3", "--rps='-3' is invalid"),
                          ("pool", "4", "--pool=4 is only valid with --rps")):
        with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
            live.settings_from(Namespace(**{**vars(defaults), key: bad}))


def test_a_bad_option_or_an_unreachable_server_is_one_line_not_a_traceback(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for extra, msg in ((["--batch", "0"], "--batch=0 is invalid"),
                       ([], "cannot tell what")):
        p = subprocess.run([*LOCUST, "--headless", "-u", "1", "-t", "2s", "--host", url,
                            "--meter", "off", *extra],
                           cwd=tmp_path, env=plain_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_energy_view_figures_from_a_known_trace(tmp_path):
    """A constant 100 W trace for 10 s and 500 ok requests: 1000 J → 0.2778 Wh → 0.5556 Wh/1k;
    a 20 W server series → 0.1111 Wh/1k server-attributed."""
    from energy.base import Reading
    from energy.trace import TraceWriter

    t0 = 1_700_000_000.0
    with TraceWriter(tmp_path / "power.csv") as w:
        w.write([Reading(t0 + i * 0.5, "cpu", 100.0, None, "replay", "measured") for i in range(21)]
                + [Reading(t0 + i * 0.5, "pid:42", 20.0, None, "estimate", "estimated") for i in range(21)])
    tally = live.ServedTally()
    for i in range(500):
        tally.add(True, [i % 2], [1])  # half right: accuracy 0.5, baseline 0.5
    tally.add(False, [], [])
    view = energy_tab.EnergyView(tmp_path / "power.csv", server_pid=42)
    view.start(t0)
    f = {r["key"]: r for r in view.figures(tally)}
    assert f["power"]["value"] == pytest.approx(100.0) and f["power"]["kind"] == "measured"
    assert f["energy"]["value"] == pytest.approx(1000 / 3600)
    assert f["per1k_gross"]["value"] == pytest.approx(1000 / 500 * 1000 / 3600)
    assert f["per1k_gross"]["meter"] == "replay"
    assert f["per1k_server"]["value"] == pytest.approx(200 / 500 * 1000 / 3600)
    assert f["per1k_server"]["kind"] == "estimated"
    assert f["accuracy"]["value"] == pytest.approx(0.5) and f["baseline"]["value"] == pytest.approx(0.5)
    # Merged across workers the same as counted in one process.
    merged = live.ServedTally()
    merged.merge(tally.to_dict())
    assert merged.scores() == tally.scores() and merged.failed == 1
    off = {r["key"]: r for r in energy_tab.EnergyView(None, meter_note="--meter off").figures(tally)}
    assert off["power"]["value"] is None and off["power"]["kind"] == "not measured"


def test_variant_and_model_dir_from_served_paths(tmp_path):
    (tmp_path / "v3" / "model").mkdir(parents=True)
    assert live.variant_from_path("/x/artifacts/v3/pytorch") == "v3"
    assert live.model_dir_from_path(str(tmp_path / "v3" / "onnx" / "model.onnx"), "v3") == str(tmp_path / "v3" / "model")
    assert live.model_dir_from_path(str(tmp_path / "v9" / "onnx"), "v9") is None


@pytest.mark.slow
def test_plain_master_and_two_workers_record_from_every_worker(server, tmp_path):
    port = free_port()
    master = Launched(
        [*LOCUST, "--headless", "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port), "-u", "4", "-r", "4", "-t", "5s", "--host", server,
         "--meter", "off", "--stop-timeout", "5", "--csv", str(tmp_path / "loc")],
        name="Locust master", log=tmp_path / "master.log", cwd=tmp_path, env=plain_env(tmp_path)).start()
    workers = [Launched([*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                        name=f"Locust worker {i}", log=tmp_path / f"worker{i}.log", cwd=tmp_path,
                        env=plain_env(tmp_path)).start() for i in range(2)]
    try:
        rc = master.wait(timeout_s=180)
        for w in workers:
            w.wait(timeout_s=60)
    finally:
        for p in (master, *workers):
            p.stop()
    assert rc == 0, (tmp_path / "master.log").read_text()[-3000:]
    (run_dir,) = (tmp_path / "results" / "locust" / "pytorch__v0").iterdir()
    files = sorted(run_dir.glob("requests-run-*.csv"))
    assert {int(p.stem.rsplit("-", 1)[1]) for p in files} == {w.pid for w in workers}
    for p in files:
        rows = _rows(p)
        assert rows and all(r["ok"] == "1" for r in rows), p
    energy = {r["figure"]: r for r in _rows(tmp_path / "loc_energy.csv")}
    assert energy["Live power"]["kind"] == "not measured"  # --meter off, and it says so
    assert float(energy["Served accuracy so far"]["value"]) >= 0


def test_resolve_target_for_servers_whose_metadata_differs(tmp_path):
    """vLLM (GPU-only, absent here) and Triton (metadata without a variant), each stood in for
    by a loopback HTTP server answering their documented metadata routes with canned JSON."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    (tmp_path / "v2" / "model").mkdir(parents=True)
    routes: dict[str, object] = {}

    class Canned(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(routes[self.path]).encode() if self.path in routes else b"{}"
            self.send_response(200 if self.path in routes else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        routes["/v1/models"] = {"data": [{"id": "bigvul-modernbert", "root": str(tmp_path / "v2" / "pytorch")}]}
        t = live.resolve_target(host, live.Settings())
        assert (t.protocol, t.engine, t.variant, t.model_dir) == ("vllm", "vllm", "v2", str(tmp_path / "v2" / "model"))
        with pytest.raises(ValueError, match="not --model='other'"):
            live.resolve_target(host, live.Settings(model="other"))
        routes.clear()
        routes["/v2/models/bigvul-modernbert"] = {"name": "bigvul-modernbert", "platform": "python"}
        routes["/v2"] = {"name": "triton", "version": "2.50"}
        t = live.resolve_target(host, live.Settings())
        assert (t.protocol, t.engine, t.variant) == ("oip", "triton", None)
        assert live.resolve_target(host, live.Settings(variant="v2")).variant == "v2"
    finally:
        srv.shutdown()
