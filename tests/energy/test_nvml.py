"""The NVML meter against a FAKE pynvml (tests/energy/fake_nvml/pynvml.py: recorded values, the
real module's names, units and error classes) — no NVIDIA GPU on this machine.

Covers mJ → J and mW → W scaling, a counter reset, the power-only fallback (no energy counter:
NVMLError_NotSupported), power and counter failing independently, and the GPU selection: by
index and by UUID (full, prefix, MIG) from CUDA_VISIBLE_DEVICES or --gpus, mapped by UUID and
PCI bus order, never by NVML's own index.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from energy.config import GpuSelectionError, MeterConfig
from energy.integrate import window_record
from energy.nvml import NvmlMeter, cuda_devices_spec, parse_gpu_spec
from energy.registry import MeterUnavailable, resolve

FAKE_DIR = Path(__file__).parent / "fake_nvml"
DT = 0.1

# Three boards. NVML's enumeration order is deliberately NOT the PCI bus order, so a meter that
# took a CUDA index for an NVML index would read the wrong board.
UUID_A = "GPU-8f3e2c1a-0b9d-4c3e-9a51-2f7c6d1e0a11"  # bus 0x19 → CUDA index 0
UUID_B = "GPU-8f3e77d0-5e2a-41f0-b6c8-93a1d4e5f022"  # bus 0x3b → CUDA index 1 (shares "GPU-8f3e")
UUID_C = "GPU-c0ffee00-1111-2222-3333-444455556666"  # bus 0x9a → CUDA index 2, no energy counter
MIG_B1 = "MIG-5a6b7c8d-0000-5111-a222-b333c444d555"  # a MIG instance on board B
BOARDS = [
    {"uuid": UUID_C, "name": "Tesla P100-PCIE-16GB", "bus": "00000000:9A:00.0", "energy_mj": None,
     "power_mw": [100_000, 200_000, 300_000]},
    {"uuid": UUID_A, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:19:00.0",
     "energy_mj": [1_234_567_890, 1_234_587_890, 1_234_607_890], "power_mw": [199_000, 201_000, 200_000]},
    {"uuid": UUID_B, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:3B:00.0",
     "energy_mj": [987_000_000, 987_010_000, 987_020_000], "power_mw": [100_000], "mig": [MIG_B1]},
]


@pytest.fixture
def fake(monkeypatch):
    """The fake pynvml as ``sys.modules["pynvml"]``, with :data:`BOARDS`; no CUDA env set."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_DIR / "pynvml.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("FAKE_PYNVML_BOARDS", raising=False)
    spec.loader.exec_module(mod)
    mod.configure(BOARDS)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "METER"):
        monkeypatch.delenv(var, raising=False)
    return mod


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _play(fake, meter: NvmlMeter, clock: Clock, steps: int) -> list:
    out = []
    for k in range(steps):
        fake.STEP, clock.t = k, 1_700_000_000.0 + k * DT
        out += meter.read()
    return out


def _meter(fake, gpus: str | None = None, clock: Clock | None = None) -> NvmlMeter:
    return NvmlMeter(MeterConfig(gpus=gpus), clock=clock or Clock())


def test_counter_is_millijoules_and_power_milliwatts(fake):
    clock = Clock()
    m = _meter(fake, UUID_A, clock)
    rs = _play(fake, m, clock, 3)
    assert [r.energy_j for r in rs] == [1_234_567.890, 1_234_587.890, 1_234_607.890]
    assert [r.power_w for r in rs] == [199.0, 201.0, 200.0]
    assert {r.source for r in rs} == {"nvml-counter"} and {r.kind for r in rs} == {"measured"}
    rec = window_record(rs, rs[0].t_unix_s, rs[-1].t_unix_s, name="w")
    assert rec.gross_j == pytest.approx(40.0, rel=1e-6)  # 2 × 20 000 mJ: the counter, not power
    assert rec.source == "nvml-counter" and rec.kind == "measured"
    assert not [c for c in fake.CALLS if c.startswith("nvmlDeviceSet")]  # read-only
    m.close()


def test_counter_reset_is_flagged_and_never_summed_through(fake):
    fake.BOARDS[1]["energy_mj"] = [5_000_000, 5_010_000, 20_000, 30_000]  # driver reload at step 2
    fake.BOARDS[1]["power_mw"] = [100_000]
    clock = Clock()
    m = _meter(fake, UUID_A, clock)
    rs = _play(fake, m, clock, 4)
    assert [r.flag for r in rs] == ["", "", "reset", ""]
    rec = window_record(rs, rs[0].t_unix_s, rs[-1].t_unix_s, name="w")
    # 10 J + (reset interval bridged by 100 W × 0.1 s = 10 J) + 10 J, never 20 J − 5 010 J
    assert rec.gross_j == pytest.approx(30.0, rel=1e-6)
    assert any("reset" in f for f in rec.flags)


def test_power_only_fallback_without_the_energy_counter(fake):
    clock = Clock()
    m = _meter(fake, UUID_C, clock)
    assert m.source == "nvml-power"
    assert m.describe()["devices"]["gpu0"]["source"] == "nvml-power"
    rs = _play(fake, m, clock, 3)
    assert all(r.energy_j is None and r.flag == "" for r in rs)
    assert [r.power_w for r in rs] == [100.0, 200.0, 300.0]
    rec = window_record(rs, rs[0].t_unix_s, rs[-1].t_unix_s, name="w")
    assert rec.gross_j == pytest.approx(0.1 * (150 + 250), rel=1e-6)  # trapezoid of sampled power
    assert rec.source == "nvml-power"


def test_a_failed_power_read_keeps_the_counter_and_vice_versa(fake):
    fake.BOARDS[1]["power_mw"] = [200_000, "err", 200_000, 200_000]
    fake.BOARDS[1]["energy_mj"] = [1_000_000, 1_020_000, 1_040_000, "err"]
    clock = Clock()
    m = _meter(fake, UUID_A, clock)
    rs = _play(fake, m, clock, 4)
    assert rs[1].power_w is None and rs[1].energy_j == 1020.0 and rs[1].flag == ""
    assert rs[3].energy_j is None and rs[3].power_w == 200.0 and rs[3].flag == ""
    assert rs[3].source == "nvml-power"
    head = window_record(rs[:3], rs[0].t_unix_s, rs[2].t_unix_s, name="w")
    assert head.gross_j == pytest.approx(40.0, rel=1e-6) and head.source == "nvml-counter"  # no gap
    whole = window_record(rs, rs[0].t_unix_s, rs[3].t_unix_s, name="w")
    assert whole.source == "nvml-counter+nvml-power"  # fell back to sampled power, and says so
    assert whole.gross_j == pytest.approx(200.0 * 0.3, rel=1e-6)
    fake.BOARDS[1]["power_mw"] = ["err"]
    fake.BOARDS[1]["energy_mj"] = ["err"]
    assert m.read()[0].flag == "gap"  # only when both fail


def test_all_gpus_when_nothing_is_selected_in_pci_bus_order(fake):
    d = _meter(fake).describe()
    assert d["gpu_selection"]["from"] == "all"
    # named by NVML index; CUDA index = PCI bus order
    assert {dev: (v["uuid"], v["cuda_index"]) for dev, v in d["devices"].items()} == {
        "gpu1": (UUID_A, [0]), "gpu2": (UUID_B, [1]), "gpu0": (UUID_C, [2])}
    assert d["devices"]["gpu1"]["name"] == "NVIDIA H100 80GB HBM3"
    assert d["devices"]["gpu1"]["pci_bus_id"] == "00000000:19:00.0"


def test_cuda_visible_devices_as_indices_maps_by_pci_bus_not_nvml_index(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    m = _meter(fake)
    d = m.describe()
    assert [v["uuid"] for v in d["devices"].values()] == [UUID_A, UUID_C]
    assert m.devices() == ["gpu1", "gpu0"]  # NVML index 0 is CUDA index 2 here
    assert d["gpu_selection"] == {"spec": "0,2", "from": "CUDA_VISIBLE_DEVICES",
                                  "index_order": "PCI bus (CUDA_DEVICE_ORDER=PCI_BUS_ID)",
                                  "warnings": [d["gpu_selection"]["warnings"][0]]}
    # mixed models and CUDA's default FASTEST_FIRST order: an index is ambiguous, and it says so
    assert "CUDA_DEVICE_ORDER" in d["gpu_selection"]["warnings"][0]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert _meter(fake).describe()["gpu_selection"]["warnings"] == []
    assert {r.device for r in m.read()} == {"gpu1", "gpu0"}


def test_cuda_visible_devices_as_uuids_full_and_prefix(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUID_B},gpu-c0ffee")  # prefix, any case
    d = _meter(fake).describe()
    assert [(v["uuid"], v["cuda_index"]) for v in d["devices"].values()] == [(UUID_B, [0]), (UUID_C, [1])]
    assert d["gpu_selection"]["warnings"] == []  # UUIDs are never ambiguous about order


def test_unknown_or_ambiguous_uuid_is_a_clear_error_listing_the_gpus(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-deadbeef")
    with pytest.raises(GpuSelectionError) as ei:
        _meter(fake)
    msg = str(ei.value)
    assert "CUDA_VISIBLE_DEVICES" in msg and "'GPU-deadbeef' matches no GPU" in msg
    for u in (UUID_A, UUID_B, UUID_C, "NVIDIA H100 80GB HBM3", "Tesla P100-PCIE-16GB"):
        assert u in msg
    with pytest.raises(GpuSelectionError, match="matches no GPU"):
        resolve("auto", MeterConfig())  # not swallowed by auto: it would measure nothing
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f3e")
    with pytest.raises(GpuSelectionError, match="ambiguous"):
        _meter(fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with pytest.raises(GpuSelectionError, match="index 3 does not exist; 3 GPU"):
        _meter(fake)


@pytest.mark.parametrize("visible", ["", "-1", "-1,0"])
def test_no_gpu_visible_means_no_nvml_meter(fake, monkeypatch, visible):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(MeterUnavailable, match="no GPU selected"):
        resolve("nvml", MeterConfig())
    meters = resolve("auto", MeterConfig())
    try:
        assert "nvml" not in [m.name for m in meters]
    finally:
        for m in meters:
            m.close()


def test_gpus_option_overrides_cuda_visible_devices(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert [v["uuid"] for v in _meter(fake, "1").describe()["devices"].values()] == [UUID_B]
    assert len(_meter(fake, "all").describe()["devices"]) == 3
    assert _meter(fake, "1").describe()["gpu_selection"]["from"] == "--gpus"
    with pytest.raises(ValueError, match="allowed: all, none"):
        MeterConfig(gpus="first")


def test_mig_instance_is_measured_through_its_board(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_B1[:12])
    d = _meter(fake).describe()
    assert list(d["devices"]) == ["gpu2"] and d["devices"]["gpu2"]["mig"] == [MIG_B1]
    assert d["devices"]["gpu2"]["uuid"] == UUID_B
    assert any("whole board" in w for w in d["gpu_selection"]["warnings"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"MIG-{UUID_A}/1/0")  # the older R450 syntax
    assert [v["uuid"] for v in _meter(fake).describe()["devices"].values()] == [UUID_A]


def test_selection_syntax_and_the_trainer_spec():
    assert parse_gpu_spec("0, GPU-8f3e ,2") == ["0", "GPU-8f3e", "2"]
    assert parse_gpu_spec("1,-1,0") == ["1"]  # like CUDA: a negative index ends the list
    assert parse_gpu_spec("") == [] and parse_gpu_spec("none") == [] and parse_gpu_spec("all") is None
    assert cuda_devices_spec(2, {}) == "0,1"
    assert cuda_devices_spec(1, {"CUDA_VISIBLE_DEVICES": f"{UUID_B},{UUID_A}"}) == UUID_B
    assert cuda_devices_spec(2, {"CUDA_VISIBLE_DEVICES": "-1"}) == "none"


def test_sidecar_gpus_option_records_the_chosen_board(tmp_path):
    """The real sidecar process with the fake pynvml on its path: --gpus picks the board and the
    meter description (UUIDs) lands beside the trace and in the record."""
    from energy.trace import read_readings, record_from_csv

    out = tmp_path / "power.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE_DIR), os.environ.get("PYTHONPATH", "")]),
           "FAKE_PYNVML_BOARDS": json.dumps([
               {"uuid": UUID_C, "name": "Tesla P100-PCIE-16GB", "bus": "00000000:9A:00.0", "rate_w": 50.0},
               {"uuid": UUID_A, "name": "NVIDIA H100 80GB HBM3", "bus": "00000000:19:00.0", "rate_w": 200.0}])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run([sys.executable, "-m", "energy.sidecar", "--out", str(out), "--meter", "nvml",
                        "--gpus", UUID_A[:12], "--interval-s", "0.05", "--duration-s", "1.0"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = read_readings(out)
    assert {x.device for x in rows} == {"gpu1"} and {x.source for x in rows} == {"nvml-counter"}
    assert len(rows) >= 2
    rec = record_from_csv(out, rows[0].t_unix_s, rows[-1].t_unix_s, name="w")
    assert rec.gross_j / rec.duration_s == pytest.approx(200.0, rel=0.01)  # the H100's, not the P100's 50 W
    nv = [m for m in rec.meter["meters"] if m["meter"] == "nvml"][0]
    assert nv["devices"]["gpu1"]["uuid"] == UUID_A and nv["gpu_selection"]["from"] == "--gpus"

    bad = subprocess.run([sys.executable, "-m", "energy.sidecar", "--out", str(tmp_path / "x.csv"),
                          "--meter", "nvml", "--gpus", "GPU-deadbeef", "--duration-s", "0.2"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "matches no GPU" in bad.stderr and UUID_A in bad.stderr


def test_environment_block_lists_uuids_and_the_visible_devices(fake, monkeypatch):
    from study.environment import gpu_info

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    info = gpu_info()
    assert [d["uuid"] for d in info["devices"]] == [UUID_C, UUID_A, UUID_B]
    assert info["cuda_visible_devices"] == "1"
