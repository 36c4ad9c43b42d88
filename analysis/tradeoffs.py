"""Energy vs quality trade-offs: Pareto fronts, the SLO-constrained choice and key findings.

The quality axis is the ``--accuracy-metric`` (MCC by default — 0 for any constant or random
classifier —, or F1, or pair accuracy), the energy axis the server-attributed serving energy
per 1k requests (or a training energy).

* **Pareto front** (minimise energy, maximise accuracy): a point is on the front when no other
  point has energy ≤ and accuracy ≥ with at least one strictly better.
* **SLO choice**: among serving settings with mean p99 latency ≤ ``p99_max_ms`` and accuracy ≥
  ``accuracy_min``, the one with the lowest energy per 1k requests. Every excluded setting says
  why; settings measured by different meters or energy kinds, or serving different base models,
  are ``not comparable`` and nothing is chosen among them.
* **Key findings** (like seed 002's summary): best accuracy, lowest energy, best trade-off. The
  best trade-off is the Pareto point closest to the ideal corner (lowest energy, highest
  accuracy) after scaling both axes to [0, 1] over the points — a ratio like F1/kWh is not used
  because it is dominated by whichever run used almost no energy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """One candidate: an id, its energy (any unit, lower is better) and its accuracy figure
    (the chosen ``--accuracy-metric``: MCC, F1 or pair accuracy; higher is better)."""

    id: str
    energy: float
    accuracy: float


def _valid(points: Sequence[Point]) -> list[Point]:
    return [p for p in points if p.energy is not None and p.accuracy is not None
            and math.isfinite(p.energy) and math.isfinite(p.accuracy)]


def dominates(a: Point, b: Point) -> bool:
    """``a`` dominates ``b``: no worse in both objectives and strictly better in one."""
    return a.energy <= b.energy and a.accuracy >= b.accuracy and (a.energy < b.energy or a.accuracy > b.accuracy)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Non-dominated points, sorted by energy ascending (NaN/None points are ignored)."""
    pts = _valid(points)
    front = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(front, key=lambda p: (p.energy, -p.accuracy, p.id))


def best_tradeoff(points: Sequence[Point]) -> Point | None:
    """The Pareto point nearest the ideal corner after min–max scaling of both axes."""
    front = pareto_front(points)
    if not front:
        return None
    pts = _valid(points)
    e_lo, e_hi = min(p.energy for p in pts), max(p.energy for p in pts)
    f_lo, f_hi = min(p.accuracy for p in pts), max(p.accuracy for p in pts)

    def dist(p: Point) -> float:
        de = 0.0 if e_hi == e_lo else (p.energy - e_lo) / (e_hi - e_lo)
        df = 0.0 if f_hi == f_lo else (f_hi - p.accuracy) / (f_hi - f_lo)
        return math.hypot(de, df)

    return min(front, key=lambda p: (dist(p), p.energy, p.id))


ACCURACY_METRICS = ("mcc", "f1", "pair_accuracy")
ACCURACY_NAMES = {"mcc": "MCC", "f1": "F1", "pair_accuracy": "pair accuracy"}


def key_findings(points: Sequence[Point], energy_unit: str = "") -> dict[str, Any]:
    """Best accuracy, lowest energy and best trade-off, each with its values."""
    pts = _valid(points)
    if not pts:
        return {"best_accuracy": None, "lowest_energy": None, "best_tradeoff": None, "pareto": []}
    best = max(pts, key=lambda p: (p.accuracy, -p.energy))
    lowest = min(pts, key=lambda p: (p.energy, -p.accuracy))
    bt = best_tradeoff(pts)

    def d(p: Point | None) -> dict[str, Any] | None:
        return None if p is None else {"id": p.id, "energy": p.energy, "accuracy": p.accuracy,
                                       "energy_unit": energy_unit}

    return {"best_accuracy": d(best), "lowest_energy": d(lowest), "best_tradeoff": d(bt),
            "pareto": [p.id for p in pareto_front(pts)]}


def not_comparable(entries: Sequence[dict[str, Any]]) -> str | None:
    """``"not comparable (<field>)"`` when the settings to rank mix meters, energy kinds or base
    models (one number per setting can then not be ranked against another), else ``None``."""
    for f, key in (("energy_source", "energy_source"), ("energy_kind", "energy_kind"),
                   ("model", "model_name")):
        vals = {tuple(v) if isinstance(v, list) else v for e in entries
                if (v := e.get(key)) not in (None, "", [])}
        if len(vals) > 1:
            return f"not comparable ({f})"
    return None


def slo_choice(
    candidates: Sequence[dict[str, Any]], p99_max_ms: float, accuracy_min: float,
    metric: str = "mcc", comparable: str | None = None,
) -> dict[str, Any]:
    """Lowest-energy candidate meeting both bounds.

    Each candidate is ``{"id", "energy_per_1k_wh", "p99_ms", "accuracy"}`` (``metric`` names
    the accuracy figure). With ``comparable`` (a :func:`not_comparable` answer) nothing is
    chosen and every row says why. Returns ``{"chosen": id or None, "p99_max_ms",
    "accuracy_min", "metric", "not_comparable", "candidates": [… with "meets" and "reason"]}``.
    """
    name = ACCURACY_NAMES.get(metric, metric)
    rows = []
    for c in candidates:
        reasons = []
        e, p99, acc = c.get("energy_per_1k_wh"), c.get("p99_ms"), c.get("accuracy")
        if e is None:
            reasons.append("no energy per 1k requests")
        if p99 is None:
            reasons.append("no p99 latency")
        elif p99 > p99_max_ms:
            reasons.append(f"p99 {p99:.1f} ms > {p99_max_ms:g} ms")
        if acc is None:
            reasons.append(f"no {name}")
        elif acc < accuracy_min:
            reasons.append(f"{name} {acc:.3f} < {accuracy_min:g}")
        if comparable:
            reasons.append(comparable)
        rows.append({**c, "meets": not reasons, "reason": "; ".join(reasons) or "meets both bounds"})
    ok = [r for r in rows if r["meets"]]
    chosen = min(ok, key=lambda r: (r["energy_per_1k_wh"], r["id"])) if ok else None
    rows.sort(key=lambda r: (not r["meets"], r["energy_per_1k_wh"] if r["energy_per_1k_wh"] is not None
                             else math.inf, r["id"]))
    return {"chosen": chosen["id"] if chosen else None, "chosen_row": chosen, "p99_max_ms": p99_max_ms,
            "accuracy_min": accuracy_min, "metric": metric, "not_comparable": comparable,
            "candidates": rows}


def _mean(entry: dict[str, Any], metric: str) -> float | None:
    s = entry.get("metrics", {}).get(metric)
    return None if not s else s.get("mean")


def training_points(train: dict[str, dict[str, Any]], energy_metric: str = "energy_kwh.training",
                    accuracy_metric: str = "mcc") -> list[Point]:
    """Pareto candidates from ``aggregated_metrics.json``'s ``train`` section."""
    pts = []
    for v, e in sorted(train.items()):
        en, acc = _mean(e, energy_metric), _mean(e, accuracy_metric)
        if en is not None and acc is not None:
            pts.append(Point(v, en, acc))
    return pts


def serving_candidates(
    serve: dict[str, dict[str, Any]], train: dict[str, dict[str, Any]] | None = None,
    energy_metric: str = "energy_per_1k_wh.server", accuracy_metric: str = "mcc",
) -> list[dict[str, Any]]:
    """SLO candidates from the ``serve`` section. The accuracy figure is the served one when
    the load run scored its responses, else the variant's test-split figure from training
    (``accuracy_source`` says which). Open-loop settings' p99 is measured from the intended
    send time (coordinated omission corrected)."""
    out = []
    for key, e in sorted(serve.items()):
        acc, src = _mean(e, f"served.{accuracy_metric}"), "served"
        if acc is None and train and e.get("variant") in train:
            acc, src = _mean(train[e["variant"]], accuracy_metric), "training test split"
        out.append({"id": key, "engine": e.get("engine"), "variant": e.get("variant"), "format": e.get("format"),
                    "load": e.get("load"), "energy_per_1k_wh": _mean(e, energy_metric),
                    "p99_ms": _mean(e, "latency_ms.p99"), "latency_basis": e.get("latency_basis", "sent"),
                    "accuracy": acc, "accuracy_source": src if acc is not None else None,
                    "energy_source": e.get("energy_source"), "energy_kind": e.get("energy_kind"),
                    "model_name": e.get("model_name")})
    return out
