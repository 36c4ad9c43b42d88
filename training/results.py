"""Training result files: the DESIGN.md schema, repeat aggregation (mean + 95 % CI), atomic writes.

One function builds a run's result dict (:func:`run_result`), one aggregates repeats
(:func:`aggregate`); nothing else assembles these dicts, so their keys cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from energy import stats
from energy.base import combine_kinds
from energy.stats import get_path, set_path

STAGES = ("data", "architecture", "training", "system", "inference")

# Every result.json has at least these keys (tests check them; analysis reads them).
REQUIRED_KEYS = (
    "variant", "run_id", "status", "failure_reason", "energy_kwh", "energy_source", "energy_kind",
    "co2_kg", "grid_gco2_per_kwh", "country", "accuracy", "f1", "precision", "recall",
    "latency_ms", "duration_s", "model", "config", "environment", "n_repeats",
)

# Metrics averaged over repeats, with a 95 % CI (dotted paths into the result dict).
AGGREGATED = (
    [f"energy_kwh.{s}" for s in (*STAGES, "total")]
    + [f"energy_net_kwh.{s}" for s in (*STAGES, "total")]
    + [f"duration_s.{s}" for s in (*STAGES, "total")]
    + ["co2_kg", "accuracy", "f1", "precision", "recall", "latency_ms", "training.final_loss"]
)


def mean_ci95(values: Sequence[float]) -> tuple[float, list[float] | None]:
    """Mean and the t-based 95 % confidence interval of the mean (``None`` for n < 2)."""
    s = stats.mean_ci95(values)
    if s.n == 0:
        raise ValueError("no values")
    return s.mean, None if s.ci95 is None else list(s.ci95)


def energy_summary(records: dict[str, Any]) -> dict[str, Any]:
    """``{stage: EnergyRecord}`` → ``energy_kwh`` (gross), ``energy_net_kwh``, ``energy_source``
    (per stage) and ``energy_kind`` (the weakest stage kind, :func:`energy.base.combine_kinds`:
    ``"measured"`` only if every stage was measured)."""
    kwh: dict[str, float | None] = {}
    net: dict[str, float | None] = {}
    src: dict[str, str] = {}
    kinds = set()
    for s in STAGES:
        rec = records.get(s)
        if rec is None:
            kwh[s] = net[s] = None
            continue
        kwh[s] = rec.gross_kwh
        net[s] = rec.net_kwh
        src[s] = rec.source
        kinds.add(rec.kind)
    present = [v for v in kwh.values() if v is not None]
    kwh["total"] = sum(present) if present else None
    present_net = [v for v in net.values() if v is not None]
    net["total"] = sum(present_net) if len(present_net) == len(present) and present_net else None
    kind = combine_kinds(kinds)
    return {"energy_kwh": kwh, "energy_net_kwh": net, "energy_source": src, "energy_kind": kind}


def empty_result(variant: str, run_id: str) -> dict[str, Any]:
    """Every schema key, unset: the skeleton a run fills in (and a failed run writes as is)."""
    return {
        "variant": variant,
        "run_id": run_id,
        "status": "failed",
        "failure_reason": None,
        "energy_kwh": {s: None for s in (*STAGES, "total")},
        "energy_net_kwh": {s: None for s in (*STAGES, "total")},
        "energy_source": {},
        "energy_kind": "estimated",
        "energy": {},
        "meter": {},
        "co2_kg": None,
        "grid_gco2_per_kwh": None,
        "country": None,
        "accuracy": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "latency_ms": None,
        "duration_s": {},
        "class_balance": {},
        "data": {},
        "model": {},
        "training": {},
        "evaluation": {},
        "artifact": None,
        "notes": [],
        "config": {},
        "environment": {},
        "n_repeats": 1,
        "seed": None,
    }


def aggregate(variant: str, runs: Sequence[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """The variant's result from its repeats: the last ok run's fields, the mean of every
    :data:`AGGREGATED` metric over the ok runs, ``ci95`` for each, ``n_repeats`` and ``runs``.

    If no repeat succeeded the result is failed, with every repeat's reason.
    """
    ok = [r for r in runs if r.get("status") == "ok"]
    base = dict(ok[-1] if ok else runs[-1])
    out = {**base, "variant": variant, "run_id": run_id}
    out["runs"] = [r.get("run_id") for r in runs]
    out["n_repeats"] = len(runs)
    out["n_ok"] = len(ok)
    out["ci95"] = {}
    if not ok:
        out["status"] = "failed"
        out["failure_reason"] = "; ".join(
            f"{r.get('run_id')}: {r.get('failure_reason')}" for r in runs
        )
        return out
    for dotted in AGGREGATED:
        vals = [get_path(r, dotted) for r in ok]
        if any(v is None for v in vals):
            continue
        m, ci = mean_ci95(vals)
        set_path(out, dotted, m)
        if ci is not None:
            out["ci95"][dotted] = ci
    out["energy_records_of_run"] = base.get("run_id")
    if len(ok) < len(runs):  # base is an ok run, so the status stays "ok"
        out["notes"] = [*out.get("notes", []), f"{len(runs) - len(ok)} of {len(runs)} repeats failed; means over the ok ones"]
    return out
