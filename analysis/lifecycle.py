"""Lifecycle projection (seed "Carbon-Efficient AI Framework"): a year of serving, per region.

For each engine × variant × format × load setting, the measured energy per request (gross, from
the steady inference window) is scaled to ``requests_per_day × days`` and converted to kg CO₂
with each region's grid intensity from :mod:`energy.carbon`. The variant's one-off training
energy (``energy_kwh.total``) is shown beside it, so a reader sees when serving overtakes
training. These are projections of measured (or labelled-estimated) figures, not measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from energy.base import J_PER_KWH

DEFAULT_COUNTRIES = ("DEU", "FIN", "FRA", "USA")
DEFAULT_REQUESTS_PER_DAY = 100_000
DEFAULT_DAYS = 365


def _carbon():
    """Import :mod:`energy.carbon` on use so the rest of the report works without it."""
    from energy import carbon

    return carbon


def project(
    energy_per_request_j: float, requests_per_day: float, days: int, country: str, training_kwh: float = 0.0
) -> dict[str, Any]:
    """kWh and kg CO₂ for ``requests_per_day × days`` requests at ``energy_per_request_j`` plus a
    one-off ``training_kwh``, via ``energy.carbon.lifecycle`` (the shared implementation).

    The inference kWh is cross-checked against the direct product so a unit slip in either
    place cannot go unnoticed.
    """
    carbon = _carbon()
    lc = carbon.lifecycle(requests_per_day=requests_per_day, energy_per_request_j=energy_per_request_j,
                          days=days, country=country, training_kwh=training_kwh)
    kwh = requests_per_day * days * energy_per_request_j / J_PER_KWH
    if abs(lc["inference_kwh"] - kwh) > 1e-9 * max(1.0, abs(kwh)):
        raise ValueError(f"energy.carbon.lifecycle returned {lc['inference_kwh']} kWh, expected {kwh} kWh")
    return lc


def lifecycle_table(
    serve: dict[str, dict[str, Any]],
    train: dict[str, dict[str, Any]] | None = None,
    requests_per_day: float = DEFAULT_REQUESTS_PER_DAY,
    days: int = DEFAULT_DAYS,
    countries: Sequence[str] = DEFAULT_COUNTRIES,
    energy_metric: str = "j_per_request.gross",
) -> list[dict[str, Any]]:
    """One row per serving setting × country (see module docstring). Raises ImportError when
    :mod:`energy.carbon` is absent and ``ValueError`` for an unknown country."""
    rows = []
    for key, e in sorted(serve.items()):
        s = e.get("metrics", {}).get(energy_metric)
        if not s or s.get("mean") is None:
            continue
        j = float(s["mean"])
        t = (train or {}).get(e.get("variant"), {})
        t_kwh = (t.get("metrics", {}).get("energy_kwh.total") or {}).get("mean")
        for c in countries:
            p = project(j, requests_per_day, days, c, training_kwh=t_kwh or 0.0)
            rows.append({
                "id": key, "engine": e.get("engine"), "variant": e.get("variant"), "format": e.get("format"),
                "load": e.get("load"), "country": p["country"], "grid_gco2_per_kwh": p["grid_gco2_per_kwh"],
                "grid_source": p.get("grid_source"), "requests_per_day": requests_per_day, "days": days,
                "j_per_request": j, "serving_kwh": p["inference_kwh"], "serving_co2_kg": p["inference_co2_kg"],
                "training_kwh": t_kwh, "training_co2_kg": None if t_kwh is None else p["training_co2_kg"],
                "total_kwh": p["total_kwh"], "total_co2_kg": p["co2_kg"],
                "energy_label": e.get("label", ""),
            })
    return rows
