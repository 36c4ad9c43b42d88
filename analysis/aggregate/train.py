"""The training side of the aggregate: one row per ``result.json`` under ``<results>/train``,
and which of them count (a variant's latest repeats; its mean file only when it has none)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.aggregate.columns import TRAIN_METRICS, canonical_variant, flatten, sources_of
from analysis.io import get_path, read_json
from study.paths import Paths
from study.schema import TrainingResult


def collect_train(paths: Paths) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per training ``result.json`` under ``<results>/train`` plus a list of
    incomplete or unreadable entries (as failed-table rows)."""
    results_dir, root = paths.results, paths.train_root
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    if not root.is_dir():
        return pd.DataFrame(rows), problems
    for path in sorted(root.rglob("result.json")):
        rel = path.relative_to(results_dir)
        is_run = path.parent.parent.name == "runs"
        variant_dir = path.parent.parent.parent if is_run else path.parent
        try:
            obj = TrainingResult.from_dict(read_json(path)).to_dict()  # read through the schema
        except (OSError, ValueError) as e:
            problems.append(
                {"stage": "train", "variant": canonical_variant(variant_dir.name), "run_id": path.parent.name,
                 "status": "unreadable", "failure_reason": f"{type(e).__name__}: {e}", "path": str(rel)}
            )
            continue
        variant_raw = str(obj.get("variant") or variant_dir.name)
        row: dict[str, Any] = {
            "variant": canonical_variant(variant_raw),
            "variant_raw": variant_raw,
            "variant_dir": str(variant_dir.relative_to(results_dir)),
            "level": "run" if is_run else "variant",
            "run_id": str(obj.get("run_id") or path.parent.name),
            "status": str(obj.get("status") or "ok"),
            "failure_reason": obj.get("failure_reason"),
            "n_repeats": obj.get("n_repeats"),
            "listed_runs": ",".join(map(str, obj.get("runs") or [])),
            "energy_kind": obj.get("energy_kind"),
            "energy_source": sources_of(obj),
            "energy_source_training": get_path(obj, "energy_source.training")
            if isinstance(obj.get("energy_source"), dict) else obj.get("energy_source"),
            "country": obj.get("country"),
            "model_name": get_path(obj, "model.name"),
            "flags": ",".join(obj.get("flags") or []),
            "excluded_runs": ",".join(str(x.get("run_id")) for x in (obj.get("excluded") or [])
                                      if isinstance(x, dict)),
            "include_flagged": bool(obj.get("include_flagged", False)),
            "data": str(get_path(obj, "config.data.path") or get_path(obj, "split.data_path") or ""),
            "synthetic": bool(get_path(obj, "environment.synthetic", False)),
            "path": str(rel),
            "mtime_unix_s": path.stat().st_mtime,
        }
        row.update(flatten(obj, TRAIN_METRICS))
        rows.append(row)
    # repeat directories that never got a result.json (killed mid-run)
    for runs_dir in sorted(root.rglob("runs")):
        if not runs_dir.is_dir():
            continue
        for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            if not (d / "result.json").exists():
                problems.append(
                    {"stage": "train", "variant": canonical_variant(runs_dir.parent.name), "run_id": d.name,
                     "status": "incomplete", "failure_reason": "no result.json (run killed or still running)",
                     "path": str(d.relative_to(results_dir))}
                )
    # variant folders with no result at all (training killed before writing one)
    for vdir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = paths.train_runs(vdir.name)
        if not paths.train_result(vdir.name).exists() and not list(runs.glob("*/result.json")) \
                and not runs.is_dir():
            problems.append(
                {"stage": "train", "variant": canonical_variant(vdir.name), "run_id": None, "status": "incomplete",
                 "failure_reason": "no result.json (run killed or still running)",
                 "path": str(vdir.relative_to(results_dir))}
            )
    df = pd.DataFrame(rows)
    if not df.empty:
        df["used"], df["note"] = _select_train(df)
    return df, problems


def _select_train(df: pd.DataFrame) -> tuple[list[bool], list[str]]:
    used = [False] * len(df)
    note = [""] * len(df)
    for _vdir, idx in df.groupby("variant_dir").groups.items():
        idx = list(idx)
        sub = df.loc[idx]
        runs = sub[sub["level"] == "run"]
        vfile = sub[sub["level"] == "variant"]
        listed: set[str] = set()
        for lst in vfile["listed_runs"]:
            listed |= {r for r in str(lst).split(",") if r}
        # Repeats the training run itself left out of its means (resumed, tokenisation cache hit;
        # docs/training.md), unless it was asked to include them.
        excluded: set[str] = set()
        for lst in vfile.get("excluded_runs", pd.Series(dtype=str)):
            excluded |= {r for r in str(lst).split(",") if r and r != "nan"}
        if not runs.empty:
            chosen = runs
            if listed and runs["run_id"].isin(listed).any():
                chosen = runs[runs["run_id"].isin(listed)]
            for i in runs.index:
                pos = df.index.get_loc(i)
                if i not in chosen.index:
                    note[pos] = "superseded (not in the variant result.json's runs)"
                elif df.at[i, "status"] != "ok":
                    note[pos] = "failed"
                elif df.at[i, "run_id"] in excluded and len(excluded) < len(chosen):
                    note[pos] = f"flagged ({df.at[i, 'flags']}): left out of means"
                else:
                    used[pos] = True
            for i in vfile.index:
                note[df.index.get_loc(i)] = "variant mean file (statistics use its repeats)"
        else:
            for i in vfile.index:
                pos = df.index.get_loc(i)
                if df.at[i, "status"] != "ok":
                    note[pos] = "failed"
                else:
                    used[pos] = True
                    n_rep = df.at[i, "n_repeats"]
                    if n_rep is not None and not (isinstance(n_rep, float) and math.isnan(n_rep)) and int(n_rep) > 1:
                        note[pos] = f"n_repeats={int(n_rep)} but no runs/ on disk: used as n=1"
    return used, note

