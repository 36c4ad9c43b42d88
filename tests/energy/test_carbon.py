"""Grid intensity, CO₂ and the lifecycle projection on known numbers."""

from __future__ import annotations

import importlib.util

import pytest

from energy.carbon import FALLBACK_G_PER_KWH, co2_kg, grid_intensity, grid_intensity_info, lifecycle

HAS_CC = importlib.util.find_spec("codecarbon") is not None


@pytest.mark.parametrize("code", ["DEU", "FIN", "FRA", "USA"])
def test_seed_regions_are_known_in_both_sources(code):
    assert grid_intensity(code, source="table") == FALLBACK_G_PER_KWH[code]
    g = grid_intensity(code)
    assert 10.0 < g < 1000.0
    # Our table mirrors CodeCarbon's 2023 data to one decimal.
    assert g == pytest.approx(FALLBACK_G_PER_KWH[code], abs=0.06)


@pytest.mark.skipif(not HAS_CC, reason="codecarbon not installed")
def test_codecarbon_data_is_preferred():
    info = grid_intensity_info("fra")
    assert info["country"] == "FRA"
    assert info["source"].startswith("codecarbon")
    assert info["g_per_kwh"] == pytest.approx(56.039)
    assert info["year"] == 2023


def test_unknown_country_lists_known_codes():
    with pytest.raises(ValueError) as ei:
        grid_intensity("XYZ")
    assert "XYZ" in str(ei.value) and "FRA" in str(ei.value) and "DEU" in str(ei.value)
    with pytest.raises(ValueError, match="allowed: auto, codecarbon, table"):
        grid_intensity("FRA", source="web")


def test_co2_kg():
    assert co2_kg(10.0, "DEU", source="table") == pytest.approx(10.0 * 381.0 / 1000.0)
    assert co2_kg(0.0, "FRA") == 0.0
    with pytest.raises(ValueError, match="kwh"):
        co2_kg(-1.0, "FRA")


def test_lifecycle_projection():
    # 1000 requests/day × 36 J × 365 days = 13.14 MJ = 3.65 kWh.
    out = lifecycle(requests_per_day=1000, energy_per_request_j=36.0, days=365, country="FRA",
                    source="table")
    assert out["requests_total"] == 365_000
    assert out["inference_kwh"] == pytest.approx(3.65)
    assert out["energy_kwh"] == pytest.approx(3.65)
    assert out["co2_kg"] == pytest.approx(3.65 * 56.0 / 1000.0)
    assert out["grid_gco2_per_kwh"] == 56.0 and out["country"] == "FRA"
    with_train = lifecycle(1000, 36.0, 365, "FRA", training_kwh=1.35, source="table")
    assert with_train["total_kwh"] == pytest.approx(5.0)
    assert with_train["co2_kg"] == pytest.approx(5.0 * 0.056)
    with pytest.raises(ValueError, match="requests_per_day"):
        lifecycle(-1, 1.0)
