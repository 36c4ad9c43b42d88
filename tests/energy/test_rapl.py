"""RAPL: absent here (one log line via auto, tested in test_meters); wrap handling on a
powercap tree laid out like the kernel's (the hardware is absent, so its files are a fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from energy.config import MeterConfig
from energy.integrate import window_record
from energy.rapl import RaplMeter


def _zone(root: Path, name: str, dirname: str, energy_uj: int, max_uj: int) -> Path:
    z = root / dirname
    z.mkdir(parents=True)
    (z / "name").write_text(name + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def test_rapl_unwraps_counter_via_max_energy_range(tmp_path):
    root = tmp_path / "powercap"
    max_uj = 262_143_328_850
    pkg = _zone(root, "package-0", "intel-rapl:0", max_uj - 50_000_000, max_uj)  # 50 J before wrap
    dram = _zone(root, "dram", "intel-rapl:0:0", 1_000_000, max_uj)
    _zone(root, "core", "intel-rapl:0:1", 5, max_uj)  # inside the package figure: not a device
    cfg = MeterConfig(rapl_root=str(root))
    assert RaplMeter.probe(cfg) is None
    m = RaplMeter(cfg)
    assert m.devices() == ["cpu-package-0", "dram-0"]
    r1 = m.read()
    (pkg / "energy_uj").write_text(f"{30_000_000}\n")  # wrapped: +50 J to the top, +30 J after
    (dram / "energy_uj").write_text(f"{3_000_000}\n")
    r2 = m.read()
    e1 = {r.device: r.energy_j for r in r1}
    e2 = {r.device: r.energy_j for r in r2}
    assert e2["cpu-package-0"] - e1["cpu-package-0"] == pytest.approx(80.0, rel=1e-9)
    assert e2["dram-0"] - e1["dram-0"] == pytest.approx(2.0, rel=1e-9)
    assert all(r.source == "rapl" and r.kind == "measured" for r in r1 + r2)
    rec = window_record(r1 + r2, r1[0].t_unix_s, r2[-1].t_unix_s, name="w")
    assert rec.gross_j > 0 and not any("reset" in f for f in rec.flags)
    assert m.describe()["devices"]["cpu-package-0"]["wraps_unwrapped"] == 1


def test_rapl_absent_is_a_reason_not_an_exception(tmp_path):
    assert "does not exist" in RaplMeter.probe(MeterConfig(rapl_root=str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    assert "no intel-rapl" in RaplMeter.probe(MeterConfig(rapl_root=str(tmp_path / "empty")))
