"""The load side of the aggregate: one row per repeat under
``<results>/load/<engine>__<variant>/<run_id>/``, and which runs count (the latest ok run of
each serving setting; the others are superseded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.aggregate.columns import (
    LOAD_METRICS,
    SETTING_COLUMNS,
    canonical_variant,
    flatten,
    load_label,
    sources_of,
)
from analysis.io import as_float, get_path, read_json
from study.paths import Paths
from study.schema import LoadSummary


def collect_load(paths: Paths) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per load repeat under ``<results>/load`` plus incomplete/unreadable entries."""
    results_dir, root = paths.results, paths.load_root
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    if not root.is_dir():
        return pd.DataFrame(rows), problems
    for cfg_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        engine_d, _, variant_d = cfg_dir.name.partition("__")
        for run_dir in sorted(p for p in cfg_dir.iterdir() if p.is_dir()):
            summ = run_dir / "summary.json"
            rel = run_dir.relative_to(results_dir)
            if not summ.exists():
                problems.append(
                    {"stage": "load", "engine": engine_d, "variant": canonical_variant(variant_d),
                     "run_id": run_dir.name, "status": "incomplete",
                     "failure_reason": "no summary.json (run killed or still running)", "path": str(rel)}
                )
                continue
            try:
                top = LoadSummary.from_dict(read_json(summ)).to_dict()
            except (OSError, ValueError) as e:
                problems.append(
                    {"stage": "load", "engine": engine_d, "variant": canonical_variant(variant_d),
                     "run_id": run_dir.name, "status": "unreadable",
                     "failure_reason": f"{type(e).__name__}: {e}", "path": str(rel / "summary.json")}
                )
                continue
            rows.extend(_load_rows(results_dir, run_dir, top, engine_d, variant_d))
    df = pd.DataFrame(rows)
    if not df.empty:
        df["used"], df["note"] = _select_load(df)
    return df, problems


def _run_time(top: dict[str, Any], path: Path) -> float:
    for k in ("energy.inference.start_unix_s", "energy.system.start_unix_s"):
        v = as_float(get_path(top, k))
        if v is not None:
            return v
    return path.stat().st_mtime


def _load_rows(results_dir: Path, run_dir: Path, top: dict[str, Any], engine_d: str, variant_d: str):
    engine = str(top.get("engine") or engine_d)
    variant_raw = str(top.get("variant") or variant_d)
    base = {
        "engine": engine,
        "variant": canonical_variant(variant_raw),
        "variant_raw": variant_raw,
        "format": str(top.get("format") or ""),
        "load": load_label(top.get("load")),
        "run_id": str(top.get("run_id") or run_dir.name),
        "run_status": str(top.get("status") or "ok"),
        "run_failure_reason": top.get("failure_reason"),
        "run_time_unix_s": _run_time(top, run_dir / "summary.json"),
        "run_path": str(run_dir.relative_to(results_dir)),
    }
    reps: list[tuple[str, dict[str, Any], Path]] = []
    rep_dirs = sorted(
        (p for p in run_dir.glob("repeat-*") if p.is_dir()),
        key=lambda p: int(p.name.split("-", 1)[1]) if p.name.split("-", 1)[1].isdigit() else 0,
    )
    for rd in rep_dirs:
        f = rd / "summary.json"
        if f.exists():
            try:
                reps.append((rd.name.split("-", 1)[1], LoadSummary.from_dict(read_json(f)).to_dict(), rd))
            except (OSError, ValueError) as e:
                reps.append((rd.name.split("-", 1)[1], {"status": "unreadable", "failure_reason": str(e)}, rd))
        else:
            reps.append((rd.name.split("-", 1)[1], {"status": "incomplete",
                                                    "failure_reason": "no summary.json in repeat folder"}, rd))
    if not reps and isinstance(top.get("repeats"), list) and top["repeats"]:
        for k, r in enumerate(top["repeats"], start=1):
            if isinstance(r, dict):
                rd = run_dir / f"repeat-{k}"
                reps.append((str(r.get("repeat", k)), r, rd if rd.is_dir() else run_dir))
    if not reps:
        reps.append(("1", top, run_dir))
    out = []
    for k, rep, rd in reps:
        power = rd / "power.csv"
        row = dict(base)
        row.update(
            {
                "repeat": k,
                "status": str(rep.get("status") or base["run_status"]),
                "failure_reason": rep.get("failure_reason") or (
                    base["run_failure_reason"] if base["run_status"] != "ok" else None),
                "energy_kind": rep.get("energy_kind") or top.get("energy_kind"),
                "energy_source": sources_of(rep) or sources_of(top),
                "meter": sources_of(top) or sources_of(rep),
                "flags": ",".join(sorted(set(rep.get("flags") or []) | set(top.get("flags") or []))),
                "latency_basis": rep.get("latency_basis") or top.get("latency_basis") or "sent",
                "model_name": str(top.get("model") or ""),
                "country": rep.get("country") or top.get("country"),
                "synthetic": bool(get_path(rep, "environment.synthetic", False)
                                  or get_path(top, "environment.synthetic", False)),
                "power_csv": str(power.relative_to(results_dir)) if power.exists() else "",
                "repeat_path": str((rd / "summary.json").relative_to(results_dir))
                if (rd / "summary.json").exists() else str((run_dir / "summary.json").relative_to(results_dir)),
            }
        )
        for w in ("system", "idle", "warmup", "inference"):
            row[f"window.{w}.start_unix_s"] = as_float(get_path(rep, f"energy.{w}.start_unix_s"))
            row[f"window.{w}.end_unix_s"] = as_float(get_path(rep, f"energy.{w}.end_unix_s"))
            row[f"window.{w}.source"] = get_path(rep, f"energy.{w}.source")
            row[f"window.{w}.kind"] = get_path(rep, f"energy.{w}.kind")
        row.update(flatten(rep, LOAD_METRICS))
        out.append(row)
    return out


def _select_load(df: pd.DataFrame) -> tuple[list[bool], list[str]]:
    used = [False] * len(df)
    note = [""] * len(df)
    for _key, idx in df.groupby(list(SETTING_COLUMNS), dropna=False).groups.items():
        sub = df.loc[list(idx)]
        ok_runs = sub[sub["status"] == "ok"]
        if ok_runs.empty:  # a setting with only degraded repeats is shown as such
            ok_runs = sub[sub["status"] == "degraded"]
        latest = None
        if not ok_runs.empty:
            latest = ok_runs.sort_values("run_time_unix_s").iloc[-1]["run_id"]
        ok_status = set(ok_runs["status"])
        for i in sub.index:
            pos = df.index.get_loc(i)
            if df.at[i, "status"] == "degraded" and "degraded" not in ok_status:
                note[pos] = "degraded (left out: ok repeats of this setting exist)"
            elif df.at[i, "status"] not in ok_status:
                note[pos] = "failed"
            elif df.at[i, "run_id"] != latest:
                note[pos] = "superseded (a later run of the same setting exists)"
            else:
                used[pos] = True
    return used, note

