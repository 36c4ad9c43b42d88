"""Energy vs quality trade-offs: Pareto fronts, the SLO-constrained choice and key findings.

* **Pareto front** (minimise energy, maximise F1): a point is on the front when no other point
  has energy ≤ and F1 ≥ with at least one strictly better.
* **SLO choice**: among serving settings with mean p99 latency ≤ ``p99_max_ms`` and F1 ≥
  ``f1_min``, the one with the lowest energy per 1k requests. Every excluded setting says why.
* **Key findings** (like seed 002's summary): best F1, lowest energy, best trade-off. The best
  trade-off is the Pareto point closest to the ideal corner (lowest energy, highest F1) after
  scaling both axes to [0, 1] over the points — a ratio like F1/kWh is not used because it is
  dominated by whichever run used almost no energy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """One candidate: an id, its energy (any unit, lower is better) and its F1 (higher is better)."""

    id: str
    energy: float
    f1: float


def _valid(points: Sequence[Point]) -> list[Point]:
    return [p for p in points if p.energy is not None and p.f1 is not None
            and math.isfinite(p.energy) and math.isfinite(p.f1)]


def dominates(a: Point, b: Point) -> bool:
    """``a`` dominates ``b``: no worse in both objectives and strictly better in one."""
    return a.energy <= b.energy and a.f1 >= b.f1 and (a.energy < b.energy or a.f1 > b.f1)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Non-dominated points, sorted by energy ascending (NaN/None points are ignored)."""
    pts = _valid(points)
    front = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(front, key=lambda p: (p.energy, -p.f1, p.id))


def best_tradeoff(points: Sequence[Point]) -> Point | None:
    """The Pareto point nearest the ideal corner after min–max scaling of both axes."""
    front = pareto_front(points)
    if not front:
        return None
    pts = _valid(points)
    e_lo, e_hi = min(p.energy for p in pts), max(p.energy for p in pts)
    f_lo, f_hi = min(p.f1 for p in pts), max(p.f1 for p in pts)

    def dist(p: Point) -> float:
        de = 0.0 if e_hi == e_lo else (p.energy - e_lo) / (e_hi - e_lo)
        df = 0.0 if f_hi == f_lo else (f_hi - p.f1) / (f_hi - f_lo)
        return math.hypot(de, df)

    return min(front, key=lambda p: (dist(p), p.energy, p.id))


def key_findings(points: Sequence[Point], energy_unit: str = "") -> dict[str, Any]:
    """Best F1, lowest energy and best trade-off, each with its values."""
    pts = _valid(points)
    if not pts:
        return {"best_f1": None, "lowest_energy": None, "best_tradeoff": None, "pareto": []}
    best_f1 = max(pts, key=lambda p: (p.f1, -p.energy))
    lowest = min(pts, key=lambda p: (p.energy, -p.f1))
    bt = best_tradeoff(pts)

    def d(p: Point | None) -> dict[str, Any] | None:
        return None if p is None else {"id": p.id, "energy": p.energy, "f1": p.f1, "energy_unit": energy_unit}

    return {"best_f1": d(best_f1), "lowest_energy": d(lowest), "best_tradeoff": d(bt),
            "pareto": [p.id for p in pareto_front(pts)]}


def slo_choice(
    candidates: Sequence[dict[str, Any]], p99_max_ms: float, f1_min: float
) -> dict[str, Any]:
    """Lowest-energy candidate meeting both bounds.

    Each candidate is ``{"id", "energy_per_1k_wh", "p99_ms", "f1"}``. Returns ``{"chosen": id or
    None, "p99_max_ms", "f1_min", "candidates": [… with "meets" and "reason"]}``.
    """
    rows = []
    for c in candidates:
        reasons = []
        e, p99, f1 = c.get("energy_per_1k_wh"), c.get("p99_ms"), c.get("f1")
        if e is None:
            reasons.append("no energy per 1k requests")
        if p99 is None:
            reasons.append("no p99 latency")
        elif p99 > p99_max_ms:
            reasons.append(f"p99 {p99:.1f} ms > {p99_max_ms:g} ms")
        if f1 is None:
            reasons.append("no F1")
        elif f1 < f1_min:
            reasons.append(f"F1 {f1:.3f} < {f1_min:g}")
        rows.append({**c, "meets": not reasons, "reason": "; ".join(reasons) or "meets both bounds"})
    ok = [r for r in rows if r["meets"]]
    chosen = min(ok, key=lambda r: (r["energy_per_1k_wh"], r["id"])) if ok else None
    rows.sort(key=lambda r: (not r["meets"], r["energy_per_1k_wh"] if r["energy_per_1k_wh"] is not None
                             else math.inf, r["id"]))
    return {"chosen": chosen["id"] if chosen else None, "chosen_row": chosen, "p99_max_ms": p99_max_ms,
            "f1_min": f1_min, "candidates": rows}


def _mean(entry: dict[str, Any], metric: str) -> float | None:
    s = entry.get("metrics", {}).get(metric)
    return None if not s else s.get("mean")


def training_points(train: dict[str, dict[str, Any]], energy_metric: str = "energy_kwh.training") -> list[Point]:
    """Pareto candidates from ``aggregated_metrics.json``'s ``train`` section."""
    pts = []
    for v, e in sorted(train.items()):
        en, f1 = _mean(e, energy_metric), _mean(e, "f1")
        if en is not None and f1 is not None:
            pts.append(Point(v, en, f1))
    return pts


def serving_candidates(
    serve: dict[str, dict[str, Any]], train: dict[str, dict[str, Any]] | None = None,
    energy_metric: str = "energy_per_1k_wh.gross",
) -> list[dict[str, Any]]:
    """SLO candidates from the ``serve`` section. F1 is the served F1 when the load run scored
    its responses, else the variant's test F1 from training (``f1_source`` says which)."""
    out = []
    for key, e in sorted(serve.items()):
        f1, src = _mean(e, "served.f1"), "served"
        if f1 is None and train and e.get("variant") in train:
            f1, src = _mean(train[e["variant"]], "f1"), "training test split"
        out.append({"id": key, "engine": e.get("engine"), "variant": e.get("variant"), "format": e.get("format"),
                    "load": e.get("load"), "energy_per_1k_wh": _mean(e, energy_metric),
                    "p99_ms": _mean(e, "latency_ms.p99"), "f1": f1, "f1_source": src if f1 is not None else None})
    return out
