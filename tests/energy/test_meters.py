"""Meter selection, labels, and absent hardware (NVML, RAPL) on this CPU box."""

from __future__ import annotations

import logging
import os
import time

import pytest

from energy import open_meters
from energy.config import EstimateCoefficients, MeterConfig
from energy.estimate import EstimateMeter
from energy.registry import METERS, MeterUnavailable, parse_spec, probe, resolve


def _has_nvml() -> bool:
    return probe("nvml", MeterConfig()) is None


def _has_rapl() -> bool:
    return probe("rapl", MeterConfig()) is None


@pytest.mark.parametrize("spec", ["nvidia", "estimate+bogus", "nvml,rapl", "auto+"])
def test_invalid_meter_name_lists_valid_ones(spec):
    with pytest.raises(ValueError) as ei:
        open_meters(spec)
    msg = str(ei.value)
    for name in ("auto", "nvml", "rapl", "estimate", "codecarbon", "replay:<power.csv>"):
        assert name in msg


def test_spec_grammar():
    assert parse_spec("estimate+codecarbon") == [("estimate", None), ("codecarbon", None)]
    assert parse_spec("replay:/x/p.csv") == [("replay", "/x/p.csv")]
    with pytest.raises(ValueError, match="needs a trace"):
        parse_spec("replay")
    with pytest.raises(ValueError, match="takes no argument"):
        parse_spec("estimate:foo")
    assert set(METERS) == {"nvml", "rapl", "estimate", "codecarbon", "replay"}


@pytest.mark.skipif(_has_nvml() or _has_rapl(), reason="this machine has NVML or RAPL")
def test_auto_without_nvml_and_rapl_logs_one_line_each_and_falls_back(caplog):
    with caplog.at_level(logging.INFO, logger="energy"):
        meters = resolve("auto", MeterConfig())
    try:
        names = [m.name for m in meters]
        assert names[0] == "estimate"
        nvml_lines = [r for r in caplog.records if "nvml" in r.getMessage() and "not available" in r.getMessage()]
        rapl_lines = [r for r in caplog.records if "rapl" in r.getMessage() and "not available" in r.getMessage()]
        assert len(nvml_lines) == 1 and len(rapl_lines) == 1
        assert all(r.exc_info is None and r.levelno <= logging.INFO for r in caplog.records)
        assert "NVML" in nvml_lines[0].getMessage() or "pynvml" in nvml_lines[0].getMessage()
        assert "powercap" in rapl_lines[0].getMessage()
    finally:
        for m in meters:
            m.close()


@pytest.mark.skipif(_has_nvml(), reason="this machine has NVML")
def test_asking_for_nvml_by_name_here_is_a_clear_error():
    with pytest.raises(MeterUnavailable, match="nvml.*not available"):
        resolve("nvml")


@pytest.mark.skipif(_has_rapl(), reason="this machine can read RAPL")
def test_asking_for_rapl_by_name_here_is_a_clear_error():
    with pytest.raises(MeterUnavailable, match="rapl.*not available"):
        resolve("rapl")


def test_estimate_is_labelled_and_records_its_coefficients():
    with open_meters("estimate", interval_s=0.05) as meters:
        with meters.window("work") as w:
            sum(i * i for i in range(200_000))
    rec = w.record
    assert rec.source == "estimate" and rec.kind == "estimated"
    assert rec.gross_j is not None and rec.gross_j > 0
    est = next(m for m in rec.meter["meters"] if m["meter"] == "estimate")
    co = est["coefficients"]
    assert co["p_min_w_per_core"] == 0.74 and co["p_max_w_per_core"] == 3.5
    assert "cloudcarbonfootprint" in co["source"]
    n = co["n_cores"]
    # The model bounds the mean power: n × p_min ≤ P ≤ n × p_max.
    assert n * 0.74 * 0.999 <= rec.gross_j / rec.duration_s <= n * 3.5 * 1.001


def test_estimate_model_and_configurable_coefficients():
    from energy.estimate import power_w

    c = EstimateCoefficients(p_min_w_per_core=1.0, p_max_w_per_core=5.0, n_cores=4)
    assert power_w(c, 4, 0.0) == 4.0 and power_w(c, 4, 1.0) == 20.0 and power_w(c, 4, 0.5) == 12.0
    with pytest.raises(ValueError, match="p_min_w_per_core"):
        EstimateCoefficients(p_min_w_per_core=5.0, p_max_w_per_core=1.0)


def test_estimate_coefficients_from_env(monkeypatch):
    monkeypatch.setenv("ENERGY_ESTIMATE_P_MIN_W", "1.5")
    monkeypatch.setenv("ENERGY_ESTIMATE_P_MAX_W", "6")
    cfg = MeterConfig.from_env()
    assert cfg.estimate.p_min_w_per_core == 1.5 and cfg.estimate.p_max_w_per_core == 6.0
    assert "ENERGY_ESTIMATE" in cfg.estimate.source
    monkeypatch.setenv("ENERGY_ESTIMATE_P_MIN_W", "lots")
    with pytest.raises(ValueError, match="ENERGY_ESTIMATE_P_MIN_W"):
        MeterConfig.from_env()


def test_estimate_per_process_is_a_cross_check():
    m = EstimateMeter(MeterConfig(pids=(os.getpid(),)))
    t_end = time.time() + 0.3
    while time.time() < t_end:
        pass  # burn some CPU in this process
    rs = m.read()
    devs = {r.device: r for r in rs}
    assert set(devs) == {"cpu", f"pid:{os.getpid()}"}
    assert devs[f"pid:{os.getpid()}"].power_w >= 0
    assert all(r.kind == "estimated" for r in rs)


def test_codecarbon_cross_check_is_estimated_here_and_not_summed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # CodeCarbon must not write emissions.csv anywhere
    with open_meters("estimate+codecarbon", interval_s=0.05, country="FRA") as meters:
        with meters.window("w") as w:
            time.sleep(0.3)
    rec = w.record
    assert set(rec.per_device_j) == {"cpu"}
    cc = rec.cross_checks["codecarbon"]
    assert cc["source"] == "codecarbon" and cc["energy_j"] is not None and cc["energy_j"] > 0
    if not (_has_nvml() or _has_rapl()):
        assert cc["kind"] == "estimated"
    assert not list(tmp_path.iterdir())


def test_meter_env_var_selects_the_meter(monkeypatch, constant_200w_csv):
    monkeypatch.setenv("METER", f"replay:{constant_200w_csv}")
    with open_meters() as meters:
        assert meters.describe()["source"] == "replay"


@pytest.mark.gpu
@pytest.mark.skipif(not _has_nvml(), reason="needs an NVIDIA GPU with NVML (none on this machine)")
def test_real_nvml_meter_reads_every_gpu():
    with open_meters("nvml", interval_s=0.1) as meters:
        with meters.window("gpu") as w:
            time.sleep(2.0)
    rec = w.record
    assert rec.kind == "measured" and rec.source in ("nvml-counter", "nvml-power")
    assert rec.gross_j is not None and rec.gross_j > 0
    assert all(d.startswith("gpu") for d in rec.per_device_j)


def test_gpu_validation_comparison_on_a_synthetic_trace(synth):
    from energy.validate_gpu import compare_counter_vs_power

    rs = synth.counter_trace(300.0, 60.0, with_power=True)
    out = compare_counter_vs_power(rs, synth.T0 + 1.0, synth.T0 + 59.0)["gpu0"]
    assert out["counter_j"] == pytest.approx(300.0 * 58.0, rel=1e-9)
    assert out["power_integrated_j"] == pytest.approx(300.0 * 58.0, rel=1e-9)
    assert out["rel_diff_power_vs_counter"] == pytest.approx(0.0, abs=1e-9)


def test_gpu_validation_refuses_without_a_gpu():
    import subprocess
    import sys
    from pathlib import Path

    if _has_nvml():
        pytest.skip("this machine has a GPU: the refusal path does not apply")
    repo = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "energy.validate_gpu", "--seconds", "1", "--out",
                        "/nonexistent/never-written"], cwd=repo, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(repo)}, timeout=120)
    assert r.returncode == 2 and "needs an NVIDIA GPU" in r.stderr


def test_codecarbon_alone_is_the_figure_and_labelled_estimated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_meters("codecarbon", interval_s=0.05) as meters:
        with meters.window("w") as w:
            time.sleep(0.2)
        d = meters.describe()
    assert w.record.source == "codecarbon" and d["source"] == "codecarbon"
    assert w.record.gross_j is not None and w.record.gross_j > 0
    if not (_has_nvml() or _has_rapl()):
        assert w.record.kind == "estimated" and d["kind"] == "estimated"


def test_codecarbon_unknown_country_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown country code 'ZZZ'.*FRA"):
        resolve("codecarbon", MeterConfig(country_iso_code="ZZZ"))
