"""Collect every training and load result into tidy tables and ``aggregated_metrics.json``.

Reads ``<results>/train/**/result.json`` and ``<results>/load/**/summary.json`` (schemas in
docs/interfaces.md) and writes, atomically:

* ``<results>/tables/train_runs.csv``   one row per training result file (repeat or variant file)
* ``<results>/tables/load_runs.csv``    one row per load repeat
* ``<results>/tables/train_summary.csv`` per variant × metric: mean, 95 % CI, n
* ``<results>/tables/serve_summary.csv`` per engine × variant × format × load × metric
* ``<results>/tables/failed.csv``       every failed or incomplete run, never averaged in
* ``<results>/aggregated_metrics.json`` the same summaries as one JSON document

(Parquet copies beside the CSVs when pyarrow is importable.)

Which observations count
------------------------
Training: a variant's statistics come from its repeats (``runs/<run_id>/result.json``). When the
variant's ``result.json`` lists ``runs``, only those (the latest invocation) are used and older
repeats are kept in the table marked ``superseded``; with no repeats on disk, the variant file
itself is one observation (n = 1, no CI). The variant file is never averaged together with its
own repeats (it *is* their mean).

Load: a run's statistics come from its repeats (``repeat-<k>/summary.json``, else the
``repeats`` list inside the run's summary, else the summary itself as n = 1). When several runs
exist for one engine × variant × format × load setting, the latest run with an ok repeat is
used and the others are marked ``superseded``.

Anything with ``status`` other than ``"ok"`` goes to the failed table with its reason.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.io import as_float, get_path, read_json, write_json_atomic, write_table_atomic
from analysis.stats import mean_ci95
from study.schema import LOAD_METRICS, LoadSummary, TrainingResult

STAGES = ("data", "architecture", "training", "system", "inference")

# Dotted keys read from a training result.json (all numeric).
TRAIN_METRICS = (
    *(f"energy_kwh.{s}" for s in (*STAGES, "total")),
    *(f"energy_net_kwh.{s}" for s in (*STAGES, "total")),
    "co2_kg",
    "grid_gco2_per_kwh",
    "energy_kwh.export",
    "energy_kwh.unaccounted",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "mcc",
    "balanced_accuracy",
    "roc_auc",
    "baseline_f1",
    "pair_accuracy",
    "latency_ms",
    "duration_s.total",
    "duration_s.training",
    "model.params",
    "model.trainable_params",
    "model.size_mb",
)

CI_NOTE = (
    "ci95 is a two-sided 95 % confidence interval of the mean from Student's t with n-1 degrees "
    "of freedom over repeats; it is null when n = 1 (a single run has no spread to estimate)."
)

_VARIANT_ALIAS = re.compile(r"^(v\d+)(?:[_-].*)?$")


def canonical_variant(name: str) -> str:
    """``"v2_lora_peft+v7_f16"`` → ``"v2+v7"``; names that are not ``v<N>…`` stay as they are;
    a compressed variant keeps its method: ``"v0_baseline@qat"`` → ``"v0@qat"``."""
    if "@" in str(name):
        parent, _, method = str(name).partition("@")
        return f"{canonical_variant(parent)}@{method}"
    parts = []
    for p in str(name).split("+"):
        m = _VARIANT_ALIAS.match(p.strip())
        parts.append(m.group(1) if m else p.strip())
    return "+".join(parts)


# What makes two load runs one serving setting (docs/analysis.md): runs that differ in any of
# these are never merged or superseded by each other. The load knobs are folded into the
# ``load`` label (``closed-u8·b4·w2``), the meter is its own column.
SETTING_COLUMNS = ("engine", "variant", "format", "load", "meter")


def load_label(load: dict[str, Any] | None) -> str:
    """A short label for a load setting: ``closed-u8``, ``open-r20-p40``, ``sweep-1,4,16``,
    with ``·b<batch>``, ``·w<workers>``, ``·len<max length>``, ``·stable`` when they are not the
    defaults (batch 1, one local Locust process, the model's own max length, fixed duration)."""
    if not isinstance(load, dict) or not load:
        return "default"
    return _load_base(load) + "".join(
        f"·{tag}{load[k]}" for k, tag, default in (("batch", "b", 1), ("workers", "w", 0),
                                                   ("max_length", "len", None))
        if load.get(k) not in (None, default)) + ("·stable" if load.get("stable") else "")


def _load_base(load: dict[str, Any]) -> str:
    model = load.get("model") or "closed"
    if load.get("sweep"):
        sweep = load["sweep"]
        return f"sweep-{','.join(str(s) for s in sweep) if isinstance(sweep, list) else sweep}"
    def num(x: Any) -> str:
        return f"{x:g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)

    if model == "open" or load.get("rps"):
        pool = f"-p{num(load['pool'])}" if load.get("pool") else ""
        return f"open-r{num(load.get('rps'))}{pool}"
    return f"{model}-u{num(load.get('users'))}"


def _sources_of(obj: dict[str, Any]) -> str:
    src = obj.get("energy_source")
    if isinstance(src, dict):
        vals = sorted({str(v) for v in src.values() if v})
        return ",".join(vals)
    return str(src) if src else ""


def _flatten(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float | None]:
    return {k: as_float(get_path(obj, k)) for k in keys}


# --------------------------------------------------------------------------- training


def collect_train(results_dir: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per training ``result.json`` under ``results_dir/train`` plus a list of
    incomplete or unreadable entries (as failed-table rows)."""
    root = results_dir / "train"
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
            "energy_source": _sources_of(obj),
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
        row.update(_flatten(obj, TRAIN_METRICS))
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
        if not (vdir / "result.json").exists() and not list(vdir.glob("runs/*/result.json")) \
                and not (vdir / "runs").is_dir():
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


# --------------------------------------------------------------------------- load


def collect_load(results_dir: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per load repeat under ``results_dir/load`` plus incomplete/unreadable entries."""
    root = results_dir / "load"
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
                "energy_source": _sources_of(rep) or _sources_of(top),
                "meter": _sources_of(top) or _sources_of(rep),
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
        row.update(_flatten(rep, LOAD_METRICS))
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


# --------------------------------------------------------------------------- summaries


def energy_label(kinds: list[Any], sources: list[Any]) -> str:
    """``"estimated · estimate"``, ``"measured · nvml-counter,rapl"`` or ``"mixed …"``."""
    ks = sorted({str(k) for k in kinds if k and str(k) != "nan"})
    ss = sorted({s for src in sources if src and str(src) != "nan" for s in str(src).split(",")})
    kind = ks[0] if len(ks) == 1 else ("mixed (" + "/".join(ks) + ")" if ks else "unknown kind")
    return f"{kind} · {', '.join(ss) if ss else 'unknown meter'}"


def _metric_summaries(sub: pd.DataFrame, metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in metrics:
        if m not in sub.columns:
            continue
        s = mean_ci95(sub[m].tolist())
        if s.n == 0:
            continue
        out[m] = s.to_dict()
    return out


def summarise_train(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per variant: ``{"n", "runs", "energy_kind", "energy_source", "label", "metrics"}``."""
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    used = df[df["used"]]
    for variant, sub in used.groupby("variant"):
        out[str(variant)] = {
            "variant": str(variant),
            "n": int(len(sub)),
            "runs": sub["run_id"].tolist(),
            "energy_kind": sorted({str(k) for k in sub["energy_kind"] if k}),
            "energy_source": sorted({s for v in sub["energy_source"] if v for s in str(v).split(",")}),
            "label": energy_label(sub["energy_kind"].tolist(), sub["energy_source"].tolist()),
            "metrics": _metric_summaries(sub, TRAIN_METRICS),
        }
    return out


def serve_key(engine: str, variant: str, fmt: str, load: str, meter: str = "") -> str:
    """The key of one serving setting (:data:`SETTING_COLUMNS`) in ``aggregated_metrics.json``."""
    return "__".join([engine, variant, fmt or "-", load, *([meter] if meter else [])])


def summarise_serve(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per engine × variant × format × load: n, run_id, labels and metric summaries."""
    out: dict[str, dict[str, Any]] = {}
    if df.empty:
        return out
    used = df[df["used"]]
    for (engine, variant, fmt, load, meter), sub in used.groupby(list(SETTING_COLUMNS), dropna=False):
        key = serve_key(str(engine), str(variant), str(fmt), str(load), str(meter))
        flags = sorted({f for v in sub["flags"] if isinstance(v, str) and v for f in v.split(",")})
        out[key] = {
            "engine": str(engine),
            "variant": str(variant),
            "format": str(fmt),
            "load": str(load),
            "meter": str(meter),
            "status": "degraded" if set(sub["status"]) == {"degraded"} else "ok",
            "flags": flags,
            "latency_basis": "intended" if "intended" in set(sub["latency_basis"]) else "sent",
            "model_name": str(sub["model_name"].iloc[0]),
            "run_id": str(sub["run_id"].iloc[0]),
            "n": int(len(sub)),
            "energy_kind": sorted({str(k) for k in sub["energy_kind"] if k}),
            "energy_source": sorted({s for v in sub["energy_source"] if v for s in str(v).split(",")}),
            "label": energy_label(sub["energy_kind"].tolist(), sub["energy_source"].tolist()),
            "power_csv": [p for p in sub["power_csv"].tolist() if p],
            "metrics": _metric_summaries(sub, LOAD_METRICS),
        }
    return out


def _long_table(summary: dict[str, dict[str, Any]], id_cols: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for entry in summary.values():
        for metric, s in entry["metrics"].items():
            ci = s.get("ci95")
            rows.append(
                {**{c: entry.get(c) for c in id_cols}, "metric": metric, "mean": s["mean"],
                 "ci95_lo": ci[0] if ci else None, "ci95_hi": ci[1] if ci else None,
                 "std": s.get("std"), "n": s["n"], "energy_label": entry["label"]}
            )
    return pd.DataFrame(rows)


def failed_table(train: pd.DataFrame, load: pd.DataFrame, problems: list[dict[str, Any]]) -> pd.DataFrame:
    """Every failed, incomplete or unreadable result, with its reason."""
    rows = list(problems)
    if not train.empty:
        for _, r in train[(train["status"] != "ok")].iterrows():
            rows.append({"stage": "train", "variant": r["variant"], "run_id": r["run_id"], "status": r["status"],
                         "failure_reason": r["failure_reason"], "path": r["path"]})
    if not load.empty:
        for _, r in load[(load["status"] != "ok")].iterrows():
            rows.append({"stage": "load", "engine": r["engine"], "variant": r["variant"], "run_id": r["run_id"],
                         "repeat": r["repeat"], "status": r["status"], "failure_reason": r["failure_reason"] or (f"degraded: {r['flags']}" if r["status"] == "degraded" else None),
                         "path": r["repeat_path"]})
    cols = ["stage", "engine", "variant", "run_id", "repeat", "status", "failure_reason", "path"]
    df = pd.DataFrame(rows, columns=cols)
    return df.astype(object).where(df.notna(), None)


# --------------------------------------------------------------------------- entry point


@dataclass
class Aggregate:
    """Everything :func:`aggregate` found: tidy tables and the JSON summary."""

    results_dir: Path
    train_runs: pd.DataFrame
    load_runs: pd.DataFrame
    failed: pd.DataFrame
    metrics: dict[str, Any]
    written: list[Path] = field(default_factory=list)

    @property
    def train(self) -> dict[str, dict[str, Any]]:
        return self.metrics["train"]

    @property
    def serve(self) -> dict[str, dict[str, Any]]:
        return self.metrics["serve"]


def aggregate(results_dir: str | os.PathLike = "results", write: bool = True) -> Aggregate:
    """Read all results under ``results_dir`` and (if ``write``) write the tables and JSON."""
    results_dir = Path(results_dir)
    train, p1 = collect_train(results_dir)
    load, p2 = collect_load(results_dir)
    # -- compression study (analysis/compression.py) --
    from analysis import compression

    comp, p3 = compression.collect(results_dir)
    # -- end compression --
    failed = failed_table(train, load, p1 + p2 + p3)
    train_s = summarise_train(train)
    serve_s = summarise_serve(load)
    metrics = {
        "schema": "green-pipeline-study/aggregated_metrics/1",
        "generated_unix_s": time.time(),
        "results_dir": str(results_dir),
        "ci_note": CI_NOTE,
        "train": train_s,
        "serve": serve_s,
        "compress": compression.summarise(comp),  # compression study
        "failed": failed.to_dict(orient="records"),
        "superseded": {
            "train": int((train["note"].str.startswith("superseded")).sum()) if not train.empty else 0,
            "load": int((load["note"].str.startswith("superseded")).sum()) if not load.empty else 0,
        },
    }
    agg = Aggregate(results_dir, train, load, failed, metrics)
    if write:
        tables = results_dir / "tables"
        agg.written += write_table_atomic(train, tables / "train_runs.csv")
        agg.written += write_table_atomic(load, tables / "load_runs.csv")
        agg.written += write_table_atomic(_long_table(train_s, ("variant",)), tables / "train_summary.csv")
        agg.written += write_table_atomic(
            _long_table(serve_s, SETTING_COLUMNS), tables / "serve_summary.csv")
        agg.written += write_table_atomic(failed, tables / "failed.csv")
        agg.written += write_table_atomic(comp, tables / "compress_runs.csv")  # compression study
        agg.written.append(write_json_atomic(results_dir / "aggregated_metrics.json", metrics))
    return agg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.aggregate",
        description="Aggregate results/train/**/result.json and results/load/**/summary.json into "
        "tidy tables (results/tables/*.csv) and results/aggregated_metrics.json.",
    )
    ap.add_argument("--results-dir", default="results", help="results root (default: results)")
    args = ap.parse_args(argv)
    agg = aggregate(args.results_dir)
    print(
        f"aggregated {len(agg.train)} training variant(s), {len(agg.serve)} serving setting(s), "
        f"{len(agg.failed)} failed/incomplete run(s)"
    )
    for p in agg.written:
        print(f"  wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
