"""Grid carbon intensity, CO₂ from energy, and a lifecycle projection.

Intensity comes from CodeCarbon's offline per-country data when the package is installed
(``codecarbon/data/private_infra/global_energy_mix.json``: per ISO-3 country, a
``carbon_intensity`` in gCO₂e/kWh, else an energy mix that CodeCarbon weights by per-source
factors — we do the same, reading the file directly so no tracker is started), and from this
module's own table otherwise. Codes are ISO 3166-1 alpha-3 (``FRA``, ``DEU``, ``FIN``, ``USA``).
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from energy.base import J_PER_KWH

# Fallback when CodeCarbon's data is not installed. gCO₂e/kWh of electricity generation, year
# 2023, from Ember's yearly electricity data as republished by Our World in Data ("Carbon
# intensity of electricity generation"); these are the values CodeCarbon 3.3.2 ships in
# global_energy_mix.json. (The seed study's hard-coded DEU 366 / FIN 86 / FRA 57 / USA 386,
# labelled "2024 average" without a source, are within ~10 % of these.)
FALLBACK_G_PER_KWH: dict[str, float] = {
    "AUT": 110.8,
    "BEL": 138.1,
    "CAN": 170.0,
    "CHE": 34.8,
    "CHN": 582.3,
    "DEU": 381.0,
    "DNK": 151.7,
    "ESP": 174.1,
    "FIN": 79.2,
    "FRA": 56.0,
    "GBR": 237.6,
    "IND": 713.4,
    "IRL": 290.8,
    "ITA": 330.7,
    "JPN": 485.4,
    "NLD": 267.6,
    "NOR": 30.1,
    "POL": 661.9,
    "SWE": 40.7,
    "USA": 369.5,
}
FALLBACK_SOURCE = "Ember / Our World in Data, carbon intensity of electricity generation, 2023 (energy.carbon table)"
FALLBACK_YEAR = 2023
SOURCES = ("auto", "codecarbon", "table")


def _codecarbon_data_dir() -> Path | None:
    # find_spec locates the package without importing it (CodeCarbon's import pulls in a lot).
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "data" / "private_infra"
    return d if (d / "global_energy_mix.json").is_file() else None


@lru_cache(maxsize=1)
def _codecarbon_mix() -> tuple[dict[str, Any], dict[str, Any], str] | None:
    d = _codecarbon_data_dir()
    if d is None:
        return None
    try:
        mix = json.loads((d / "global_energy_mix.json").read_text())
        per_source = json.loads((d / "carbon_intensity_per_source.json").read_text())
    except (OSError, ValueError):
        return None
    version = "?"
    try:
        from importlib.metadata import version as _v

        version = _v("codecarbon")
    except Exception:
        pass
    return mix, per_source, version


def _mix_intensity(entry: dict[str, Any], per_source: dict[str, Any]) -> float | None:
    """CodeCarbon's rule: the country's own ``carbon_intensity`` if given, else the TWh-weighted
    mean of per-source factors (``None`` when the mix does not add up)."""
    if entry.get("carbon_intensity") is not None:
        return float(entry["carbon_intensity"])
    total = entry.get("total_TWh")
    if not total:
        return None
    acc, seen = 0.0, 0.0
    for key, twh in entry.items():
        if key.endswith("_TWh") and key != "total_TWh":
            factor = per_source.get(key[: -len("_TWh")])
            if factor is not None:
                acc += twh / total * factor
                seen += twh
    return acc if abs(seen - total) < 1e-6 * max(1.0, total) else None


def known_countries(source: str = "auto") -> list[str]:
    """ISO-3 codes :func:`grid_intensity` knows with ``source``."""
    codes = set(FALLBACK_G_PER_KWH) if source in ("auto", "table") else set()
    cc = _codecarbon_mix() if source in ("auto", "codecarbon") else None
    if cc is not None:
        codes |= {k for k, v in cc[0].items() if _mix_intensity(v, cc[1]) is not None}
    return sorted(codes)


def grid_intensity_info(country: str, source: str = "auto") -> dict[str, Any]:
    """``{"country", "g_per_kwh", "source", "year"}`` for ISO-3 ``country``.

    ``source``: ``auto`` (CodeCarbon's data, else the table), ``codecarbon`` or ``table``.
    Unknown codes raise ``ValueError`` listing the known ones.
    """
    if source not in SOURCES:
        raise ValueError(f"grid intensity source {source!r} unknown; allowed: {', '.join(SOURCES)}")
    if not isinstance(country, str) or not country.strip():
        raise ValueError(f"country must be an ISO-3 code such as 'FRA', got {country!r}")
    code = country.strip().upper()
    if source in ("auto", "codecarbon"):
        cc = _codecarbon_mix()
        if cc is not None and code in cc[0]:
            g = _mix_intensity(cc[0][code], cc[1])
            if g is not None:
                return {
                    "country": code,
                    "g_per_kwh": g,
                    "source": f"codecarbon {cc[2]} global_energy_mix.json",
                    "year": cc[0][code].get("year"),
                }
        if source == "codecarbon" and cc is None:
            raise ValueError("grid intensity source 'codecarbon' asked for, but codecarbon is not installed")
    if source in ("auto", "table") and code in FALLBACK_G_PER_KWH:
        return {"country": code, "g_per_kwh": FALLBACK_G_PER_KWH[code], "source": FALLBACK_SOURCE,
                "year": FALLBACK_YEAR}
    raise ValueError(
        f"unknown country code {country!r} (ISO 3166-1 alpha-3 expected); known: "
        + ", ".join(known_countries(source))
    )


def grid_intensity(country: str = "FRA", source: str = "auto") -> float:
    """Grid carbon intensity of ISO-3 ``country`` in gCO₂e per kWh."""
    return float(grid_intensity_info(country, source)["g_per_kwh"])


def co2_kg(kwh: float, country: str = "FRA", source: str = "auto") -> float:
    """kg CO₂e for ``kwh`` kilowatt-hours drawn from ``country``'s grid."""
    if kwh is None or kwh < 0:
        raise ValueError(f"kwh must be a non-negative number, got {kwh!r}")
    return kwh * grid_intensity(country, source) / 1000.0


def lifecycle(
    requests_per_day: float,
    energy_per_request_j: float,
    days: float = 365,
    country: str = "FRA",
    *,
    training_kwh: float = 0.0,
    source: str = "auto",
) -> dict[str, Any]:
    """Project serving energy and CO₂ over a deployment (after the seed's lifecycle assessment).

    ``requests_per_day`` × ``energy_per_request_j`` (J, measured — not an assumed wattage) ×
    ``days`` → inference kWh; plus a one-off ``training_kwh``; CO₂ with ``country``'s grid.
    Returns ``{requests_total, inference_kwh, training_kwh, total_kwh, energy_kwh,
    inference_co2_kg, training_co2_kg, co2_kg, grid_gco2_per_kwh, grid_source, country, …}``
    (``energy_kwh``/``co2_kg`` are the totals).
    """
    for key, v in (("requests_per_day", requests_per_day), ("energy_per_request_j", energy_per_request_j),
                   ("days", days), ("training_kwh", training_kwh)):
        if v is None or v < 0:
            raise ValueError(f"lifecycle: {key} must be a non-negative number, got {v!r}")
    info = grid_intensity_info(country, source)
    g = float(info["g_per_kwh"])
    requests_total = requests_per_day * days
    inference_kwh = requests_total * energy_per_request_j / J_PER_KWH
    total_kwh = inference_kwh + training_kwh
    return {
        "country": info["country"],
        "days": days,
        "requests_per_day": requests_per_day,
        "energy_per_request_j": energy_per_request_j,
        "requests_total": requests_total,
        "inference_kwh": inference_kwh,
        "training_kwh": training_kwh,
        "total_kwh": total_kwh,
        "energy_kwh": total_kwh,
        "inference_co2_kg": inference_kwh * g / 1000.0,
        "training_co2_kg": training_kwh * g / 1000.0,
        "co2_kg": total_kwh * g / 1000.0,
        "grid_gco2_per_kwh": g,
        "grid_source": info["source"],
        "grid_year": info["year"],
    }
