"""serving.bench: ratio arithmetic on known rows, and one small real run (two servers + runners)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.bench import add_ratios, format_table
from tests.conftest import REPO_ROOT


def test_ratios_on_known_rows():
    rows = add_ratios([
        {"setup": "pytorch in-process", "engine": "pytorch", "kind": "in-process", "rows_per_s": 50.0},
        {"setup": "onnxruntime in-process", "engine": "onnxruntime", "kind": "in-process", "rows_per_s": 200.0},
        {"setup": "pytorch server", "engine": "pytorch", "kind": "server", "rows_per_s": 40.0},
        {"setup": "onnxruntime server", "engine": "onnxruntime", "kind": "server", "rows_per_s": 100.0},
    ])
    by = {r["setup"]: r for r in rows}
    assert by["onnxruntime server"]["vs_pytorch_server"] == pytest.approx(2.5)
    assert by["onnxruntime server"]["vs_in_process"] == pytest.approx(0.5)
    assert by["pytorch server"]["vs_in_process"] == pytest.approx(0.8)
    assert by["pytorch in-process"]["vs_in_process"] is None
    table = format_table(rows)
    assert "onnxruntime server" in table and "2.50" in table and "0.50" in table


def test_bench_runs_end_to_end(serving_root, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "serving.bench", "--artifacts-dir", str(serving_root),
         "--requests", "24", "--concurrency", "4", "--max-length", "64", "--out", str(out),
         "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime server" in proc.stdout and "÷ pytorch srv" in proc.stdout
    result = json.loads(out.read_text())
    setups = [r["setup"] for r in result["rows"]]
    assert setups == ["pytorch in-process", "onnxruntime in-process", "pytorch in-process b1",
                      "onnxruntime in-process b1", "pytorch server", "onnxruntime server"]
    assert all(r["rows"] == 24 and r["rows_per_s"] > 0 for r in result["rows"])
    assert result["settings"]["threads"] == 1 and result["environment"]
