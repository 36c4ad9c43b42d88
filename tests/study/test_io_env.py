"""Atomic JSON results and the environment block."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from energy.base import EnergyRecord
from study.environment import capture
from study.io import write_json_atomic


def test_write_json_atomic_round_trip(tmp_path):
    rec = EnergyRecord("w", 1.0, 2.0, 1.0, 5.0, None, None, "estimate", "estimated")
    p = write_json_atomic(tmp_path / "a" / "result.json",
                          {"rec": rec, "path": Path("/x"), "nan": math.nan, "s": {2, 1}})
    d = json.loads(p.read_text())
    assert d["rec"]["gross_j"] == 5.0 and d["rec"]["gross_kwh"] == pytest.approx(5.0 / 3.6e6)
    assert d["path"] == "/x" and d["nan"] is None and d["s"] == [1, 2]
    assert [x.name for x in p.parent.iterdir()] == ["result.json"]  # no temp files left


def test_failed_write_keeps_the_old_file(tmp_path):
    p = write_json_atomic(tmp_path / "r.json", {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"v": object()})
    assert json.loads(p.read_text()) == {"v": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_capture_environment():
    env = capture()
    for key in ("git_sha", "python", "cpu", "gpu", "driver", "versions"):
        assert key in env
    assert env["cpu"]["logical_cores"] >= 1
    assert "psutil" in env["versions"]  # installed in every environment of the study
    json.dumps(env)  # serialisable as is
