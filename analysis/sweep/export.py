"""What the sweep leaves beside its study: ``aggregate.csv`` (one row per trial, every state)
and ``best.json`` (the Pareto set from ``study.best_trials``), read by the report's sweep section."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.io import write_json_atomic, write_table_atomic
from analysis.sweep.storage import safe_url, trial_counts
from analysis.tradeoffs import Point, key_findings


def trial_row(t: Any) -> dict[str, Any]:
    """One ``aggregate.csv`` row for an Optuna trial."""
    ua = t.user_attrs
    row: dict[str, Any] = {"trial": t.number, "state": t.state.name, "run_id": ua.get("run_id"),
                           "status": ua.get("status") or ("failed" if t.state.name == "FAIL" else None),
                           "variant": ua.get("variant") or t.params.get("variant"),
                           "compress": ua.get("compress") or t.params.get("compress"), "host": ua.get("host"),
                           "retry_of": ua.get("retry_of"), "energy_metric": ua.get("energy_metric"),
                           "energy": t.values[0] if t.values else None, "accuracy_metric": ua.get("accuracy_metric"),
                           "accuracy": t.values[1] if t.values else None}
    for k, v in (ua.get("set") or {}).items():
        row[f"set.{k}"] = v
    row["overridden_by_overlay"] = ",".join(ua.get("overridden_by_overlay") or [])
    for k in ("energy_kind", "energy_source", "load_energy_kind"):
        row[k] = ua.get(k)
    for k, v in sorted(ua.items()):
        if k.startswith(("train.", "compress.", "pipeline.", "load.", "path.")):
            row[k] = v
    row["run_dir"] = ua.get("run_dir")
    row["failure_reason"] = ua.get("failure_reason") or ua.get("skipped") or (
        "worker stopped mid-trial (heartbeat stale)" if t.state.name == "FAIL" and not ua.get("status") else None)
    row["duration_s"] = t.duration.total_seconds() if t.duration else None
    return row


def export_study(study: Any, out_dir: str | os.PathLike, storage: str = "") -> dict[str, Any]:
    """Write ``aggregate.csv`` (every trial) and ``best.json`` (Pareto set = ``study.best_trials``);
    ``storage`` is the study's URL, recorded without its password."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    df = pd.DataFrame([trial_row(t) for t in trials])
    write_table_atomic(df, out_dir / "aggregate.csv", parquet=False)
    names = study.metric_names or ["energy", "accuracy"]
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.values]
    pareto = sorted(study.best_trials, key=lambda t: (t.values[0], -t.values[1], t.number)) if complete else []
    pts = [Point(t.user_attrs.get("run_id") or f"t{t.number}", t.values[0], t.values[1]) for t in complete]
    kf = key_findings(pts, names[0])
    best = {"study": study.study_name, "storage": safe_url(storage) if storage else None, "metric_names": names,
            "directions": [d.name.lower() for d in study.directions], "sampler": study.user_attrs.get("sampler"),
            "n_complete": len(complete), "states": trial_counts(study),
            "pareto": [t.user_attrs.get("run_id") or f"t{t.number}" for t in pareto],
            "pareto_trials": [{"trial": t.number, "run_id": t.user_attrs.get("run_id"), names[0]: t.values[0],
                               names[1]: t.values[1], "variant": t.user_attrs.get("variant")} for t in pareto],
            # the trade-off helpers speak of "f1"; here that is the study's accuracy metric
            "best_accuracy": kf["best_accuracy"], "lowest_energy": kf["lowest_energy"], "best_tradeoff": kf["best_tradeoff"],
            "exported_unix_s": time.time()}
    write_json_atomic(out_dir / "best.json", best)
    return best

