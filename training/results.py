"""Training result files: the DESIGN.md schema, repeat aggregation (mean + 95 % CI), atomic writes.

One function builds a run's result skeleton (:func:`empty_result`), one turns its energy
windows into the energy fields (:func:`energy_summary`) and one aggregates repeats
(:func:`aggregate`); nothing else assembles these dicts, so their keys cannot drift apart.

Energy of one repeat: the five stage windows, the ONNX export window (v9) and an outer window
``run`` around the whole repeat. ``energy_kwh.total`` is the outer window; ``unaccounted`` is
the outer window minus the stages and the export (Trainer construction, checkpoint-dir
housekeeping, … — work between the stage windows), so ``stages + export + unaccounted = total``
exactly (an absent export counts 0).

Repeats carrying ``flags`` (``tokenisation_cache_hit``, ``resumed_from_step_<n>``: their
energy is not that of a whole, fresh run) are left out of the means and CIs unless
``include_flagged``; the aggregate lists them in ``excluded`` and says so in ``notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from energy.base import combine_kinds
from study import stats
from study.io import write_json_atomic
from study.metrics import METRIC_NAMES, at_chance
from study.schema import TrainingResult
from study.stats import get_path, set_path

STAGES = ("data", "architecture", "training", "system", "inference")
EXPORT = "export"  # v9's in-run ONNX export: its own window, not a stage
RUN_WINDOW = "run"  # the outer window around a whole repeat
# energy_kwh / energy_net_kwh / duration_s keys: stages + export + unaccounted = total
ENERGY_KEYS = (*STAGES, EXPORT, "unaccounted", "total")
# A repeat's flags that keep it out of the means (unless include_flagged).
TOKENISATION_CACHE_HIT = "tokenisation_cache_hit"
RESUMED_FLAG = "resumed_from_step_{step}"

# Every result.json has at least these keys (tests check them; analysis reads them).
REQUIRED_KEYS = (
    "variant", "run_id", "status", "failure_reason", "energy_kwh", "energy_source", "energy_kind",
    "co2_kg", "grid_gco2_per_kwh", "country", *METRIC_NAMES, "at_chance",
    "latency_ms", "duration_s", "model", "config", "environment", "n_repeats", "flags",
)

# Metrics averaged over repeats, with a 95 % CI (dotted paths into the result dict).
AGGREGATED = (
    [f"energy_kwh.{s}" for s in ENERGY_KEYS]
    + [f"energy_net_kwh.{s}" for s in ENERGY_KEYS]
    + [f"duration_s.{s}" for s in ENERGY_KEYS]
    + ["co2_kg", *METRIC_NAMES, "latency_ms", "training.final_loss"]
)


def mean_ci95(values: Sequence[float]) -> tuple[float, list[float] | None]:
    """Mean and the t-based 95 % confidence interval of the mean (``None`` for n < 2)."""
    s = stats.mean_ci95(values)
    if s.n == 0:
        raise ValueError("no values")
    return s.mean, None if s.ci95 is None else list(s.ci95)


def energy_summary(records: dict[str, Any]) -> dict[str, Any]:
    """``{window: EnergyRecord}`` (the stages, ``export``, ``run``) → ``energy_kwh`` (gross),
    ``energy_net_kwh``, ``energy_source`` and ``energy_kind`` (the weakest window kind,
    :func:`energy.base.combine_kinds`: ``"measured"`` only if every window was measured).

    With the outer ``run`` window, ``total`` is that window and ``unaccounted`` the rest after
    the stages and the export; without it (a repeat still in progress, a rank that does not
    measure) ``total`` is the sum of the windows so far and ``unaccounted`` is ``None``.
    """
    kwh: dict[str, float | None] = {}
    net: dict[str, float | None] = {}
    src: dict[str, str] = {}
    kinds = set()
    for s in (*STAGES, EXPORT):
        rec = records.get(s)
        if rec is None:
            kwh[s] = net[s] = None
            continue
        kwh[s] = rec.gross_kwh
        net[s] = rec.net_kwh
        src[s] = rec.source
        kinds.add(rec.kind)
    parts = [v for v in kwh.values() if v is not None]
    parts_net = [v for v in net.values() if v is not None]
    net_complete = len(parts_net) == len(parts) and bool(parts_net)
    outer = records.get(RUN_WINDOW)
    if outer is not None and outer.gross_kwh is not None:
        src["total"] = outer.source
        kinds.add(outer.kind)
        kwh["total"] = outer.gross_kwh
        kwh["unaccounted"] = outer.gross_kwh - sum(parts)
        net["total"] = outer.net_kwh
        net["unaccounted"] = (outer.net_kwh - sum(parts_net)
                              if outer.net_kwh is not None and (net_complete or not parts) else None)
    else:
        kwh["total"] = sum(parts) if parts else None
        kwh["unaccounted"] = None
        net["total"] = sum(parts_net) if net_complete else None
        net["unaccounted"] = None
    kind = combine_kinds(kinds)
    order = {k: i for i, k in enumerate(ENERGY_KEYS)}
    kwh = dict(sorted(kwh.items(), key=lambda kv: order[kv[0]]))
    net = dict(sorted(net.items(), key=lambda kv: order[kv[0]]))
    return {"energy_kwh": kwh, "energy_net_kwh": net, "energy_source": src, "energy_kind": kind}


def write_result(path, result: dict[str, Any]) -> None:
    """Write a training result atomically, through :class:`study.schema.TrainingResult` (a
    field that breaks the schema raises :class:`study.schema.SchemaError` naming it)."""
    write_json_atomic(path, TrainingResult.from_dict(result).to_dict())


def empty_result(variant: str, run_id: str) -> dict[str, Any]:
    """Every schema key, unset: the skeleton a run fills in (and a failed run writes as is)."""
    return {
        "variant": variant,
        "run_id": run_id,
        "status": "failed",
        "failure_reason": None,
        "energy_kwh": {s: None for s in ENERGY_KEYS},
        "energy_net_kwh": {s: None for s in ENERGY_KEYS},
        "energy_source": {},
        "energy_kind": "estimated",
        "energy": {},
        "meter": {},
        "co2_kg": None,
        "grid_gco2_per_kwh": None,
        "country": None,
        **{k: None for k in METRIC_NAMES},
        "at_chance": None,
        "latency_ms": None,
        "duration_s": {},
        "class_balance": {},
        "data": {},
        "model": {},
        "training": {},
        "evaluation": {},
        "artifact": None,
        "notes": [],
        "flags": [],
        "config": {},
        "environment": {},
        "n_repeats": 1,
        "seed": None,
    }


def aggregate(variant: str, runs: Sequence[dict[str, Any]], run_id: str,
              include_flagged: bool = False) -> dict[str, Any]:
    """The variant's result from its repeats: the last used run's fields, the mean of every
    :data:`AGGREGATED` metric over the used runs, ``ci95`` for each, ``n_repeats``, ``runs``.

    Used runs are the ok ones without ``flags`` (or every ok one with ``include_flagged``);
    flagged ok runs are listed in ``excluded`` with their flags. When every ok run is flagged
    there is nothing else to report: the means are over the flagged runs, the aggregate carries
    their flags and a note says so. If no repeat succeeded the result is failed, with every
    repeat's reason.
    """
    ok = [r for r in runs if r.get("status") == "ok"]
    used = ok if include_flagged else [r for r in ok if not r.get("flags")]
    only_flagged = bool(ok) and not used
    if only_flagged:
        used = ok
    base = dict(used[-1] if used else runs[-1])
    out = {**base, "variant": variant, "run_id": run_id}
    out["runs"] = [r.get("run_id") for r in runs]
    out["n_repeats"] = len(runs)
    out["n_ok"] = len(ok)
    out["n_used"] = len(used)
    out["include_flagged"] = include_flagged
    out["excluded"] = [{"run_id": r.get("run_id"), "flags": list(r.get("flags") or [])}
                       for r in ok if not any(r is u for u in used)]
    out["flags"] = sorted({f for r in used for f in (r.get("flags") or [])})
    out["ci95"] = {}
    if not ok:
        out["status"] = "failed"
        out["failure_reason"] = "; ".join(
            f"{r.get('run_id')}: {r.get('failure_reason')}" for r in runs
        )
        return out
    for dotted in AGGREGATED:
        vals = [get_path(r, dotted) for r in used]
        if any(v is None for v in vals):
            continue
        m, ci = mean_ci95(vals)
        set_path(out, dotted, m)
        if ci is not None:
            out["ci95"][dotted] = ci
    out["at_chance"] = at_chance(out.get("mcc"), out["ci95"].get("mcc"))
    out["energy_records_of_run"] = base.get("run_id")
    notes = list(out.get("notes", []))
    if len(ok) < len(runs):  # base is an ok run, so the status stays "ok"
        notes.append(f"{len(runs) - len(ok)} of {len(runs)} repeats failed; means over the ok ones")
    if out["excluded"]:
        why = "; ".join(f"{e['run_id']}: {', '.join(e['flags'])}" for e in out["excluded"])
        notes.append(f"{len(out['excluded'])} of {len(ok)} ok repeats left out of the means and CIs "
                     f"(flagged: {why}); --include-flagged / INCLUDE_FLAGGED=1 includes them")
    if only_flagged:
        notes.append(f"every ok repeat is flagged ({', '.join(out['flags'])}): the figures are those of "
                     "flagged repeats (their energy is not that of a whole, fresh run)")
    elif include_flagged and out["flags"]:
        notes.append(f"flagged repeats included in the means (--include-flagged): {', '.join(out['flags'])}")
    out["notes"] = notes
    return out
