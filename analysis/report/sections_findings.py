"""Report sections on what the measurements mean: the power timeline, stacking, the lifecycle
projection, the SLO choice and key findings, the sweep, failed runs, and the methods note."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis import plots, tradeoffs
from analysis.aggregate import Aggregate
from analysis.io import read_json
from analysis.report.analyses import ReportOptions
from analysis.report.format import Builder, fmt, fmt_ci, fmt_pct


def _timeline_runs(agg: Aggregate, limit: int) -> list[dict[str, Any]]:
    df = agg.load_runs
    if df.empty or "power_csv" not in df.columns:
        return []
    used = df[df["used"] & (df["power_csv"].fillna("") != "")]
    # one repeat (the first) per serving setting, so each engine appears once
    firsts = used.sort_values(["engine", "variant", "repeat"]).groupby(["engine", "variant", "format", "load"]).head(1)
    order = sorted(firsts.to_dict(orient="records"), key=lambda r: (plots.variant_sort_key(r["variant"]), r["engine"]))
    # prefer showing distinct engines first
    seen, first, rest = set(), [], []
    for r in order:
        (rest if r["engine"] in seen else first).append(r)
        seen.add(r["engine"])
    return (first + rest)[:limit]


def sec_power_timeline(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    runs = _timeline_runs(agg, opts.max_timelines)
    if not runs:
        b.note("No load run has a power.csv trace (the energy sidecar writes it next to each repeat's "
               "summary.json).", "warn")
        return
    b.figure(plots.fig_power_timelines(runs, agg.results_dir),
             "Power trace of one repeat per serving setting; shaded windows come from summary.json")
    b.p("Windows: system = server start, model load and warm-up of the process; idle = the idle baseline "
        "used for net energy; warm-up = from idle end to the start of the steady window (excluded from "
        "per-request energy); steady = the measured inference window.")


def _stacking_label(agg: Aggregate, r: dict[str, Any]) -> str:
    """The energy label (measured/estimated · meter) of every result a stacking row compares."""
    names = {r["baseline"], *r["components"], r["combination"]}
    if r.get("scope") == "training":
        entries = [agg.train[v] for v in names if v in agg.train]
    else:
        entries = [e for e in agg.serve.values() if e["variant"] in names
                   and r.get("scope") == f"{e['engine']} / {e['format'] or '-'} / {e['load']}"]
    return "; ".join(sorted({e["label"] for e in entries})) or "—"


def _stacking_rows(rows: list[dict[str, Any]], agg: Aggregate) -> list[list[Any]]:
    out = []
    for r in rows:
        comps = ", ".join(f"{c} {fmt_pct(s['value']) if s else '—'}" for c, s in r["component_savings"].items()) \
            if r["component_savings"] else ", ".join(r["components"])
        out.append([r["scope"], r["combination"], comps,
                    fmt_ci(r["predicted"], r["predicted_ci95"], pct=True) if r["predicted"] is not None else "—",
                    fmt_ci(r["measured"], r["measured_ci95"], pct=True) if r["measured"] is not None else "—",
                    fmt_ci(r["interaction_ratio"], r["interaction_ci95"]) if r["interaction_ratio"] else "—",
                    r["verdict"], r["reason"], _stacking_label(agg, r)])
    return out


def sec_stacking(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    rows = an["stacking_training"] + an["stacking_serving"]
    b.p("For each combination (a variant name with '+'), the predicted saving S = 1 − ∏(1 − sᵢ) from the "
        f"single-technique savings against {opts.baseline} is compared with the measured saving. ρ = measured "
        "remaining energy ÷ predicted remaining energy: ρ < 1 compounding, ρ > 1 cancelling, ρ ≈ 1 multiplicative "
        f"(CI within ±{opts.margin:.0%}). A verdict is given only when the CI allows one.")
    if not rows:
        b.note("No combination variant (e.g. v2+v7+v8) has results yet, so nothing can be tested for stacking. "
               "Train a combination and its single techniques (and serve them on the same engine) to fill this.",
               "warn")
        return
    b.table(["scope", "combination", "single savings", "predicted S [95 % CI]", "measured [95 % CI]",
             "ρ [95 % CI]", "verdict", "why", "energy (kind · meter)"], _stacking_rows(rows, agg))
    b.p(f"Training scope uses {opts.train_energy_metric}; serving scopes use {an['serve_metric_label']}. "
        "Rows whose inputs were measured by different meters or energy kinds, or built on different base "
        "models or data, are 'not comparable' and get no verdict.")


def sec_lifecycle(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    if an.get("lifecycle_error"):
        b.note(f"Lifecycle projection unavailable: {an['lifecycle_error']}.", "warn")
        return
    rows = an["lifecycle"]
    if not rows:
        b.note("No serving setting has an energy per request, so there is nothing to project.", "warn")
        return
    b.p(f"A year of serving at {opts.requests_per_day:,.0f} requests/day for {opts.days} days, from the gross "
        "energy per request of the steady window, converted with each region's grid intensity "
        "(energy.carbon). The training column is the variant's one-off pipeline energy (energy_kwh.total). "
        "These are projections of the figures above, not measurements.")
    # one row per serving setting, one CO₂ column per region (the long form is tables/lifecycle.csv)
    regions = list(dict.fromkeys(r["country"] for r in rows))
    by_id: dict[str, dict[str, Any]] = {}
    for r in rows:
        e = by_id.setdefault(r["id"], {"r": r, "co2": {}, "train_co2": {}})
        e["co2"][r["country"]] = r["serving_co2_kg"]
        e["train_co2"][r["country"]] = r["training_co2_kg"]
    table = []
    for e in by_id.values():
        r = e["r"]
        table.append([r["engine"], r["variant"], r["format"], r["load"], fmt(r["j_per_request"]), fmt(r["serving_kwh"]),
                      *[fmt(e["co2"].get(c)) for c in regions], fmt(r["training_kwh"]), r["energy_label"]])
    b.table(["engine", "variant", "format", "load", "J/request", "serving kWh", *[f"kg CO₂ {c}" for c in regions],
             "training kWh (once)", "energy (kind · meter)"], table)
    grid = {r["country"]: r["grid_gco2_per_kwh"] for r in rows}
    b.p("Grid intensity [gCO₂/kWh]: " + ", ".join(f"{c} {fmt(g)}" for c, g in grid.items())
        + ". Training CO₂ per region, and totals, are in results/tables/lifecycle.csv.")
    srcs = sorted({str(r.get("grid_source")) for r in rows if r.get("grid_source")})
    if srcs:
        b.p("Grid intensity source: " + "; ".join(srcs) + ".")


def sec_findings(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    slo = an["slo"]
    b.raw("<h3>SLO-constrained choice</h3>", "### SLO-constrained choice")
    name = tradeoffs.ACCURACY_NAMES.get(slo["metric"], slo["metric"])
    b.p(f"Lowest {an['serve_metric_label']} with p99 ≤ {slo['p99_max_ms']:g} ms and {name} ≥ "
        f"{slo['accuracy_min']:g} (change with --p99-max-ms / --accuracy-min / --accuracy-metric).")
    if slo.get("not_comparable"):
        b.note(f"No choice: the serving settings are {slo['not_comparable']}.", "warn")
    if not slo["candidates"]:
        b.note("No serving settings to choose from.", "warn")
    else:
        if slo["chosen"]:
            c = slo["chosen_row"]
            b.note(f"Choice: {c['engine']} · {c['variant']} · {c['format']} · {c['load']} — "
                   f"{fmt(c['energy_per_1k_wh'])} Wh per 1k requests, p99 {fmt(c['p99_ms'])} ms, "
                   f"{name} {fmt(c['accuracy'])} ({c['accuracy_source']}).", "ok")
        else:
            b.note("No serving setting meets both bounds; see the reasons below.", "warn")
        hl = {i for i, r in enumerate(slo["candidates"]) if r["id"] == slo["chosen"]}
        b.table(["engine", "variant", "format", "load", "Wh/1k", "p99 [ms]", name, f"{name} source", "meets",
                 "reason", "energy (kind · meter)"],
                [[r["engine"], r["variant"], r["format"], r["load"], fmt(r["energy_per_1k_wh"]), fmt(r["p99_ms"]),
                  fmt(r["accuracy"]), r["accuracy_source"] or "—", "yes" if r["meets"] else "no", r["reason"],
                  agg.serve.get(r["id"], {}).get("label", "—")]
                 for r in slo["candidates"]], highlight=hl)
    b.raw("<h3>Key findings</h3>", "### Key findings")
    rows = []
    for scope, f, unit, src in (("training", an["findings_training"], opts.train_energy_metric, agg.train),
                                ("serving", an["findings_serving"], an["serve_metric_label"], agg.serve)):
        for label, k in ((f"best {name}", "best_accuracy"), ("lowest energy", "lowest_energy"),
                         ("best trade-off", "best_tradeoff")):
            p = f.get(k)
            if p:
                rows.append([scope, label, p["id"].replace("__", " · "), fmt(p["energy"]), unit, fmt(p["accuracy"]),
                             src.get(p["id"], {}).get("label", "—")])
    if rows:
        b.table(["scope", "finding", "which", "energy", "energy metric", name, "energy (kind · meter)"], rows)
        b.p("Best trade-off: the Pareto point nearest the ideal corner (lowest energy, highest F1) after "
            "scaling both axes to [0, 1].")
    else:
        b.note(f"No results with both energy and {name}, so no key findings.", "warn")


# --- sweep section (issue 16: the Optuna study) -------------------------------------------------
def sec_sweep(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    """The study's trials and its Pareto set, from what ``python -m analysis.sweep`` exports after
    every trial: ``results/sweep/aggregate.csv`` (one row per trial) and ``best.json`` (the Pareto
    set from ``study.best_trials``)."""
    d = agg.paths.sweep
    csv, best_p = d / "aggregate.csv", d / "best.json"
    if not csv.is_file() or csv.stat().st_size < 2 or not best_p.is_file():
        b.note("No sweep has been run (make sweep N=4 writes results/sweep/study.db, aggregate.csv and best.json).")
        return
    df, best = pd.read_csv(csv), read_json(best_p)
    if df.empty or "state" not in df.columns:
        b.note("The sweep's aggregate.csv has no trials yet (or predates the Optuna study; rerun make sweep).", "warn")
        return
    e_name, a_name = (best.get("metric_names") or ["energy", "accuracy"])[:2]
    pareto = set(best.get("pareto") or [])
    done = df[(df["state"] == "COMPLETE") & df["energy"].notna() & df["accuracy"].notna()]
    pts = [tradeoffs.Point(str(r["run_id"]), float(r["energy"]), float(r["accuracy"])) for _, r in done.iterrows()]
    kinds = sorted({str(x) for c in ("energy_kind", "load_energy_kind") if c in df.columns for x in df[c].dropna()})
    srcs = sorted({str(x) for x in df.get("energy_source", pd.Series(dtype=str)).dropna()})
    label = f"{'/'.join(kinds) or 'unknown kind'} · {', '.join(srcs) or 'unknown meter'}"
    states = best.get("states") or {}
    b.p(f"Optuna study {best.get('study')} ({best.get('storage') or 'storage not recorded'}), sampler "
        f"{best.get('sampler')}: {best.get('n_complete', 0)} complete trials "
        f"({', '.join(f'{v} {k.lower()}' for k, v in states.items() if v) or 'none'}). Objectives: minimise "
        f"{e_name}, maximise {a_name}.")
    acc_label = a_name.split(".")[-1].upper() if a_name.endswith("mcc") else a_name.split(".")[-1]
    if pts:
        b.figure(plots.fig_sweep(pts, label, e_name, f"{acc_label} (test split)" if a_name.startswith("train.")
                                 else acc_label), "Each point is one complete trial; dashed: Pareto front")
    set_cols = [c for c in df.columns if c.startswith("set.")]

    def val(r, c: str) -> str:
        v = r.get(c)
        return fmt(None if v is None or pd.isna(v) else float(v))

    def _num(v):  # a knob column with gaps is float in pandas: show 128, not 128.0
        return int(v) if isinstance(v, float) and v.is_integer() else v

    def txt(r, c: str) -> str:
        v = r.get(c)
        return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)

    rows = [[txt(r, "trial"), txt(r, "run_id"), txt(r, "variant"),
             ", ".join(f"{c[4:]}={_num(r[c])}" for c in set_cols if pd.notna(r[c])), r["state"], val(r, "energy"),
             val(r, "accuracy"), "yes" if r["run_id"] in pareto else "", txt(r, "host"), txt(r, "failure_reason")]
            for _, r in df.iterrows()]
    b.table(["trial", "run", "variant", "--set values", "state", e_name, a_name, "Pareto", "host", "failure"], rows,
            highlight={i for i, r in enumerate(rows) if r[7]})
    bt = best.get("best_tradeoff")
    if bt:
        b.note(f"Pareto set (study.best_trials): {', '.join(best.get('pareto') or [])}. Best trade-off: {bt['id']} "
               f"({a_name} {fmt(bt['accuracy'])}, {e_name} {fmt(bt['energy'])}); best {a_name}: "
               f"{best['best_accuracy']['id']}; lowest energy: {best['lowest_energy']['id']}.", "ok")
    b.p(f"Energy: {label}. Sweep trials are short (max_steps in analysis/search_space.yaml), so their accuracy "
        "shows the machinery, not a tuned model. Each trial's parameters, logs, power trace and results are in "
        "results/sweep/<run>/ on the host that ran it; every metric is a user attribute of its trial.")
# --- end of sweep section ------------------------------------------------------------------------


def sec_failed(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    if agg.failed.empty:
        b.p("No failed or incomplete runs were found.")
        return
    b.p("These runs are listed for completeness and are never averaged into any figure or table above.")
    rows = [[r.get("stage"), r.get("engine") or "—", r.get("variant") or "—", r.get("run_id") or "—",
             r.get("repeat") or "—", r.get("status"), r.get("failure_reason") or "—", r.get("path")]
            for r in agg.failed.to_dict(orient="records")]
    b.table(["stage", "engine", "variant", "run", "repeat", "status", "reason", "path"], rows)
    sup = agg.metrics.get("superseded", {})
    if sup.get("train") or sup.get("load"):
        b.p(f"Superseded (older runs of the same setting, kept in results/tables but not used): "
            f"{sup.get('train', 0)} training repeat(s), {sup.get('load', 0)} load repeat(s).")


def sec_methods(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    train_labels = sorted({e["label"] for e in agg.train.values()})
    serve_labels = sorted({e["label"] for e in agg.serve.values()})
    kinds = set()
    for e in list(agg.train.values()) + list(agg.serve.values()):
        kinds |= set(e.get("energy_kind", []))
    rows = [["training energy", "; ".join(train_labels) or "no data"],
            ["serving energy", "; ".join(serve_labels) or "no data"],
            ["latency", "measured by the load client (wall clock)"],
            ["accuracy", "MCC, pair accuracy, F1 beside the constant-baseline F1, balanced accuracy, ROC-AUC "
             "(study.metrics, scikit-learn): test split (training) / scored responses (served)"],
            ["serving energy", "gross = whole machine; net = gross − idle baseline over covered time; "
             "server-attributed = the server's CPU-time share (+ GPU energy), see docs/energy.md"],
            ["CO₂", "energy × grid intensity of the configured country (energy.carbon) — derived, not measured"]]
    b.table(["figure", "measured, replayed or estimated · meter"], rows)
    if "replayed" in kinds:
        b.note("Some energy figures are REPLAYED: played back from a recorded power trace (meter "
               "replay:<power.csv>), not measured during this run. They repeat the recorded hardware "
               "figures; they say nothing about the run's own power.", "warn")
    if "estimated" in kinds:
        b.note("Some energy figures are ESTIMATED (e.g. the CPU-time model used where no NVML/RAPL meter is "
               "readable). They are labelled as such everywhere; compare them with each other, not with "
               "hardware-measured figures.", "warn")
    idle = []
    for e in agg.serve.values():
        s = e["metrics"].get("energy.inference.idle_w")
        if s and s.get("mean") is not None:
            idle.append(f"{e['engine']}·{e['variant']}·{e['format']}: {fmt(s['mean'])} W ({e['label']})")
    b.p("Net energy = gross − idle power × window duration, with idle power measured on the running, "
        "unloaded server just before the load. " + ("Idle baselines: " + ", ".join(idle) + "." if idle
                                                      else "No idle baseline was recorded."))
    b.p("Energy per 1k requests = steady-window energy ÷ successful requests × 1000 (warm-up excluded). "
        "Means and 95 % CIs are over repeats (Student's t); savings and the stacking ratio use the "
        "delta method on log energies (see docs/analysis.md). Failed runs are never averaged in.")
