"""Summaries of the rows that count: per variant and per serving setting, mean, 95 % CI and n
of every metric, their energy labels, the long tables, and the failed table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.aggregate.columns import LOAD_METRICS, SETTING_COLUMNS, TRAIN_METRICS
from analysis.stats import mean_ci95


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


def long_table(summary: dict[str, dict[str, Any]], id_cols: tuple[str, ...]) -> pd.DataFrame:
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

