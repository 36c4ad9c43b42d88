"""``python -m analysis.report``: aggregate, analyse, plot and write the report."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import tradeoffs
from analysis.aggregate import STAGES, Aggregate, aggregate
from analysis.io import write_json_atomic, write_table_atomic, write_text_atomic
from analysis.report.analyses import SERVE_METRIC_LABEL, ReportOptions, analyse, chance_flag
from analysis.report.format import fmt
from analysis.report.render import build_sections, render_html, render_md
from analysis.report.sections_results import is_synthetic
from study.paths import Paths, resolve


def build_report(results_dir: str | Path | None = None, out: str | Path | None = None,
                 opts: ReportOptions | None = None) -> dict[str, Path]:
    """Aggregate, analyse, plot and write the report; returns the paths written.

    ``results_dir`` is the results root (default ``$RESULTS_DIR``, else ``results``); ``out``
    the report folder (default ``<results>/report``)."""
    opts = opts or ReportOptions()
    paths = Paths.from_env(results=results_dir)
    out = resolve(out) if out else paths.report
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):  # figures of an earlier build would otherwise linger beside report.md
        old.unlink()
    agg = aggregate(paths.results, write=True)
    an = analyse(agg, opts)
    tables = paths.tables
    stack_rows = an["stacking_training"] + an["stacking_serving"]
    write_table_atomic(pd.DataFrame([{k: (str(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
                                     for r in stack_rows]), tables / "stacking.csv")
    write_table_atomic(pd.DataFrame(an["lifecycle"]), tables / "lifecycle.csv")
    write_json_atomic(out / "analysis.json", an)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    sections = build_sections(agg, an, opts, fig_dir)
    synthetic = is_synthetic(agg)
    written = {
        "html": write_text_atomic(out / "index.html", render_html(sections, synthetic, generated)),
        "md": write_text_atomic(out / "report.md", render_md(sections, synthetic, generated)),
        "analysis": out / "analysis.json",
        "aggregated_metrics": paths.aggregated_metrics,
    }
    _print_summary(agg, an, written["html"])
    return written


def _print_summary(agg: Aggregate, an: dict[str, Any], html_path: Path) -> None:
    rows = []
    metric = an.get("serve_metric", "energy_per_1k_wh.gross")
    for e in agg.serve.values():
        m = (e["metrics"].get(metric) or {}).get("mean")
        g = (e["metrics"].get("energy_per_1k_wh.gross") or {}).get("mean")
        p99 = (e["metrics"].get("latency_ms.p99") or {}).get("mean")
        mcc = (e["metrics"].get("served.mcc") or {}).get("mean")
        rows.append((m if m is not None else math.inf, e, g, p99, mcc))
    rows.sort(key=lambda r: r[0])
    if rows:
        head = "Wh/1k srv" if metric.endswith(".server") else "Wh/1k"
        print(f"{'engine':<12} {'variant':<10} {'format':<10} {head:>9} {'gross':>9} {'p99 ms':>8} {'MCC':>6}  energy")
        for m, e, g, p99, mcc in rows[:5]:
            print(f"{e['engine']:<12} {e['variant']:<10} {e['format']:<10} {fmt(m):>9} {fmt(g):>9} {fmt(p99):>8} "
                  f"{fmt(mcc):>6}  {e['label']}{'  ' + chance_flag(e, 'served.') if chance_flag(e, 'served.') else ''}")
    print(f"report: {html_path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report",
                                 description="Aggregate the results and write a self-contained HTML report "
                                             "(index.html) plus report.md.")
    d = ReportOptions()
    ap.add_argument("--results-dir", default=None, help="results root (default: $RESULTS_DIR, else results)")
    ap.add_argument("--out", default=None, help="report folder (default: <results-dir>/report)")
    ap.add_argument("--baseline", default=d.baseline, help="variant savings are measured against (default v0)")
    ap.add_argument("--p99-max-ms", type=float, default=d.p99_max_ms, help="SLO bound on mean p99 latency [ms]")
    ap.add_argument("--accuracy-metric", default=d.accuracy_metric, choices=list(tradeoffs.ACCURACY_METRICS),
                    help="accuracy axis of the Pareto fronts and the SLO choice (default mcc)")
    ap.add_argument("--accuracy-min", type=float, default=None,
                    help="SLO floor on the accuracy metric (default: mcc 0.05, f1 0.5, pair_accuracy 0.5)")
    ap.add_argument("--f1-min", type=float, default=None, help="SLO floor on F1 (= --accuracy-metric f1 "
                    "--accuracy-min X)")
    ap.add_argument("--requests-per-day", type=float, default=d.requests_per_day, help="lifecycle load")
    ap.add_argument("--days", type=int, default=d.days, help="lifecycle horizon in days (default 365)")
    ap.add_argument("--countries", default=",".join(d.countries),
                    help="comma-separated ISO-3 grid regions for the lifecycle table (default DEU,FIN,FRA,USA)")
    ap.add_argument("--train-energy-metric", default=d.train_energy_metric,
                    choices=[f"energy_kwh.{s}" for s in (*STAGES, "total")],
                    help="training energy used for savings, stacking and trade-offs")
    ap.add_argument("--serve-energy-metric", default=d.serve_energy_metric,
                    choices=list(SERVE_METRIC_LABEL),
                    help="serving energy used for savings, stacking, Pareto and the SLO choice "
                    "(default: server-attributed)")
    ap.add_argument("--margin", type=float, default=d.margin,
                    help="stacking: |ρ − 1| tolerance for a 'multiplicative' verdict (default 0.05)")
    ap.add_argument("--max-timelines", type=int, default=d.max_timelines, help="power timelines to plot")
    a = ap.parse_args(argv)
    countries = [c.strip().upper() for c in a.countries.split(",") if c.strip()]
    if not countries:
        ap.error("--countries: give at least one ISO-3 code, e.g. DEU,FIN,FRA,USA")
    metric, floor = a.accuracy_metric, a.accuracy_min
    if a.f1_min is not None:
        metric, floor = "f1", a.f1_min
    opts = ReportOptions(baseline=a.baseline, train_energy_metric=a.train_energy_metric,
                         serve_energy_metric=a.serve_energy_metric, accuracy_metric=metric,
                         p99_max_ms=a.p99_max_ms, accuracy_min=floor,
                         requests_per_day=a.requests_per_day, days=a.days, countries=countries, margin=a.margin,
                         max_timelines=a.max_timelines)
    build_report(a.results_dir, a.out, opts)
    return 0


