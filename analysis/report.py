"""The study report: one self-contained HTML page (plots embedded, no network) plus Markdown.

``python -m analysis.report [--results-dir results] [--out results/report]`` runs the
aggregation, the stacking / trade-off / lifecycle analyses and the plots, and writes
``index.html``, ``report.md``, ``figures/*.png`` and ``analysis.json`` under ``--out``.

Every section has a stable ``id`` (see :data:`SECTION_IDS`). A section whose data is missing
says so in place; a section that fails to build shows the error instead of breaking the report.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import compression, plots, stacking, tradeoffs
from analysis import lifecycle as lc
from analysis.aggregate import STAGES, Aggregate, aggregate
from analysis.io import write_bytes_atomic, write_json_atomic, write_table_atomic, write_text_atomic

SECTION_IDS = (
    "overview",
    "training-energy",
    "energy-f1",
    "serving-energy",
    "latency",
    "power-timeline",
    "stacking",
    "lifecycle",
    "findings",
    "compression",
    "sweep",
    "failed",
    "methods",
)


@dataclass
class ReportOptions:
    """Knobs of the analyses shown in the report (all have CLI flags)."""

    baseline: str = "v0"
    train_energy_metric: str = "energy_kwh.training"
    serve_energy_metric: str = "energy_per_1k_wh.server"
    accuracy_metric: str = "mcc"  # the quality axis of Pareto and SLO: mcc | f1 | pair_accuracy
    p99_max_ms: float = 500.0
    accuracy_min: float | None = None  # SLO floor; None → ACCURACY_FLOOR[accuracy_metric]
    requests_per_day: float = lc.DEFAULT_REQUESTS_PER_DAY
    days: int = lc.DEFAULT_DAYS
    countries: Sequence[str] = field(default_factory=lambda: list(lc.DEFAULT_COUNTRIES))
    margin: float = stacking.DEFAULT_MARGIN
    max_timelines: int = 4


# Default SLO floor per accuracy metric: MCC above the at-chance band, F1 0.5, pair accuracy
# above the coin flip.
ACCURACY_FLOOR = {"mcc": 0.05, "f1": 0.5, "pair_accuracy": 0.5}
SERVE_METRIC_LABEL = {
    "energy_per_1k_wh.server": "server-attributed Wh/1k (the server's CPU-time share + its GPU energy)",
    "energy_per_1k_wh.gross": "gross Wh/1k (whole machine, load client included)",
    "energy_per_1k_wh.net": "net Wh/1k (gross − idle baseline; load client included)",
}


def effective_serve_metric(agg: Aggregate, opts: ReportOptions) -> tuple[str, str]:
    """(metric, label): the chosen serving energy, or gross with a note when no load result
    carries the server-attributed figure (results from before attribution existed)."""
    m = opts.serve_energy_metric
    if agg.serve and not any(m in e["metrics"] for e in agg.serve.values()):
        return "energy_per_1k_wh.gross", (f"gross Wh/1k — no load result here has {m}, so the "
                                          "whole-machine figure is used instead")
    return m, SERVE_METRIC_LABEL.get(m, m)


def accuracy_floor(opts: ReportOptions) -> float:
    return ACCURACY_FLOOR.get(opts.accuracy_metric, 0.0) if opts.accuracy_min is None else opts.accuracy_min


def chance_flag(entry: dict[str, Any], prefix: str = "") -> str:
    """``"AT CHANCE"`` when the MCC's CI contains 0 (|MCC| < 0.05 at n = 1), ``"WORSE THAN
    CHANCE"`` when it lies below 0, else ``""`` (:func:`study.metrics.chance_verdict`)."""
    from study.metrics import chance_verdict

    s = entry.get("metrics", {}).get(f"{prefix}mcc") or {}
    v = chance_verdict(s.get("mean"), s.get("ci95"))
    return v.upper() if v in ("at chance", "worse than chance") else ""


@dataclass
class Section:
    id: str
    title: str
    html: str
    md: str


# --------------------------------------------------------------------------- formatting


def fmt(x: Any, digits: int = 3) -> str:
    """Numbers to 3 significant-ish figures; None/NaN → an em dash."""
    if x is None or isinstance(x, bool):
        return "—" if x is None else str(x)
    if isinstance(x, (int, float)):
        f = float(x)
        if not math.isfinite(f):
            return "—"
        if f == 0:
            return "0"
        a = abs(f)
        if a >= 1000 or a < 1e-3:
            return f"{f:.{digits}g}" if a < 1e-3 else f"{f:,.0f}"
        return f"{f:.{max(0, digits - 1 - int(math.floor(math.log10(a))))}f}"
    return str(x)


def fmt_pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def fmt_ci(mean: float | None, ci: Sequence[float] | None, n: int | None = None, pct: bool = False) -> str:
    """``0.123 [0.110, 0.136]``; ``0.123 (n=1, no CI)`` when there is no interval."""
    f = fmt_pct if pct else fmt
    if mean is None:
        return "—"
    if ci:
        return f"{f(mean)} [{f(ci[0])}, {f(ci[1])}]"
    return f"{f(mean)} (n={n}, no CI)" if n is not None else f"{f(mean)} (no CI)"


def metric_ci(entry: dict[str, Any], metric: str, scale: float = 1.0) -> str:
    s = entry.get("metrics", {}).get(metric)
    if not s or s.get("mean") is None:
        return "—"
    ci = s.get("ci95")
    if not ci:  # the table's n column already says why there is no interval
        return fmt(s["mean"] * scale)
    return fmt_ci(s["mean"] * scale, [c * scale for c in ci], s.get("n"))


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], highlight: set[int] | None = None) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, r in enumerate(rows):
        cls = ' class="hl"' if highlight and i in highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    return f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def note(text: str, kind: str = "info") -> tuple[str, str]:
    """A callout box (HTML) and its Markdown equivalent."""
    return f'<p class="note {kind}">{esc(text)}</p>', f"> {text}"


class Builder:
    """Accumulates one section's HTML and Markdown side by side."""

    def __init__(self, fig_dir: Path, sec_id: str):
        self.h: list[str] = []
        self.m: list[str] = []
        self.fig_dir = fig_dir
        self.sec_id = sec_id
        self._n = 0

    def p(self, text: str) -> None:
        self.h.append(f"<p>{esc(text)}</p>")
        self.m.append(text)

    def raw(self, h: str, m: str) -> None:
        self.h.append(h)
        self.m.append(m)

    def note(self, text: str, kind: str = "info") -> None:
        self.raw(*note(text, kind))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], highlight: set[int] | None = None) -> None:
        self.raw(html_table(columns, rows, highlight), md_table(columns, rows))

    def figure(self, fig, caption: str) -> None:
        png = plots.to_png(fig)
        self._n += 1
        name = f"{self.sec_id}-{self._n}.png"
        write_bytes_atomic(self.fig_dir / name, png)
        b64 = base64.b64encode(png).decode("ascii")
        self.h.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{b64}">'
                      f"<figcaption>{esc(caption)}</figcaption></figure>")
        self.m.append(f"![{caption}](figures/{name})\n\n*{caption}*")


# --------------------------------------------------------------------------- analyses


def analyse(agg: Aggregate, opts: ReportOptions) -> dict[str, Any]:
    """Stacking, trade-offs, SLO choice and lifecycle from an aggregate (no plotting)."""
    out: dict[str, Any] = {"options": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                       for k, v in asdict(opts).items()}}
    out["stacking_training"] = stacking.training_stacking(agg.train_runs, opts.train_energy_metric,
                                                          opts.baseline, opts.margin)
    serve_metric, serve_label = effective_serve_metric(agg, opts)
    out["serve_metric"], out["serve_metric_label"] = serve_metric, serve_label
    out["stacking_serving"] = stacking.serving_stacking(agg.load_runs, serve_metric, opts.baseline, opts.margin)
    tpts = tradeoffs.training_points(agg.train, opts.train_energy_metric, opts.accuracy_metric)
    cands = tradeoffs.serving_candidates(agg.serve, agg.train, serve_metric, opts.accuracy_metric)
    spts = [tradeoffs.Point(c["id"], c["energy_per_1k_wh"], c["accuracy"]) for c in cands
            if c["energy_per_1k_wh"] is not None and c["accuracy"] is not None]
    out["serving_comparable"] = tradeoffs.not_comparable(list(agg.serve.values()))
    out["training_comparable"] = tradeoffs.not_comparable(list(agg.train.values()))
    out["findings_training"] = tradeoffs.key_findings(tpts, opts.train_energy_metric.replace("energy_", ""))
    out["findings_serving"] = tradeoffs.key_findings(spts, "Wh per 1k requests")
    out["slo"] = tradeoffs.slo_choice(cands, opts.p99_max_ms, accuracy_floor(opts), opts.accuracy_metric,
                                      out["serving_comparable"])
    try:
        out["lifecycle"] = lc.lifecycle_table(agg.serve, agg.train, opts.requests_per_day, opts.days,
                                              opts.countries)
        out["lifecycle_error"] = None
    except ImportError as e:
        out["lifecycle"] = []
        out["lifecycle_error"] = f"energy.carbon is not available ({e})"
    except (KeyError, ValueError) as e:
        out["lifecycle"] = []
        out["lifecycle_error"] = f"lifecycle projection failed: {e}"
    return out


# --------------------------------------------------------------------------- sections


def _is_synthetic(agg: Aggregate) -> bool:
    flags = []
    for df in (agg.train_runs, agg.load_runs):
        if not df.empty and "synthetic" in df.columns:
            flags += [bool(x) for x in df["synthetic"].tolist()]
    return any(flags)


def sec_overview(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    n_train = len(agg.train)
    n_serve = len(agg.serve)
    cards = [
        ("training variants", str(n_train)),
        ("serving settings", str(n_serve)),
        ("failed / incomplete runs", str(len(agg.failed))),
    ]
    ft = an["findings_training"]
    if ft.get("lowest_energy"):
        cards.append(("lowest training energy", ft["lowest_energy"]["id"]))
    if an["slo"].get("chosen"):
        cards.append(("SLO choice", an["slo"]["chosen"].replace("__", " · ")))
    h = '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in cards
    ) + "</div>"
    b.raw(h, "\n".join(f"- **{k}**: {v}" for k, v in cards))
    if not n_train and not n_serve:
        b.note("No results found under this results directory: run `make demo` (or `make train` and "
               "`make load`) first. Every section below says what it is missing.", "warn")
    b.p(f"Results directory: {agg.results_dir}. Baseline for savings: {opts.baseline}. "
        "All intervals are 95 % confidence intervals over repeats (Student's t); n = 1 has none.")


def sec_training_energy(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    if not agg.train:
        b.note("No successful training results (results/train/<variant>/result.json) were found.", "warn")
        return
    b.figure(plots.fig_training_stages(agg.train, STAGES),
             "Energy per stage of one training pipeline run, per variant (stacked; whiskers: 95 % CI of total)")
    k, unit = plots.energy_scale_kwh(max((e["metrics"].get("energy_kwh.total") or {}).get("mean") or 0
                                         for e in agg.train.values()))
    rows = []
    for v in sorted(agg.train, key=plots.variant_sort_key):
        e = agg.train[v]
        rows.append([v, e["n"], *[metric_ci(e, f"energy_kwh.{s}", k) for s in (*STAGES, "total")],
                     e["label"]])
    b.table(["variant", "n", *[f"{s} [{unit}]" for s in (*STAGES, "total")], "energy (kind · meter)"], rows)
    b.p("Cells show mean [95 % CI]; a bare number is a single run (n = 1), which has no interval.")
    b.raw("<h3>Accuracy on the held-out test split</h3>", "### Accuracy on the held-out test split")
    b.table(["variant", "n", "MCC", "pair accuracy", "F1", "constant-baseline F1", "balanced acc.", "ROC-AUC",
             "accuracy", "verdict"],
            [[v, agg.train[v]["n"], *[metric_ci(agg.train[v], m) for m in (
                "mcc", "pair_accuracy", "f1", "baseline_f1", "balanced_accuracy", "roc_auc", "accuracy")],
              _accuracy_verdict(agg.train[v])] for v in sorted(agg.train, key=plots.variant_sort_key)])
    _chance_note(b, {v: chance_flag(e) for v, e in agg.train.items()}, "trained variant")


def _accuracy_verdict(e: dict[str, Any], prefix: str = "") -> str:
    """AT CHANCE (MCC CI contains 0), BELOW BASELINE (F1 under the constant "vulnerable"
    classifier's), or ``ok``; ``—`` without an MCC."""
    m = e.get("metrics", {})
    if (m.get(f"{prefix}mcc") or {}).get("mean") is None:
        return "—"
    words = [w for w in (chance_flag(e, prefix),) if w]  # AT CHANCE | WORSE THAN CHANCE
    f1, base = (m.get(f"{prefix}f1") or {}).get("mean"), (m.get(f"{prefix}baseline_f1") or {}).get("mean")
    if f1 is not None and base is not None and f1 < base:
        words.append("F1 BELOW CONSTANT BASELINE")
    return "; ".join(words) or "better than chance"


def _chance_note(b: Builder, flags: dict[str, str], what: str) -> None:
    """One warning per verdict: which entries are at chance, which worse than chance."""
    at = sorted(k for k, f in flags.items() if f == "AT CHANCE")
    worse = sorted(k for k, f in flags.items() if f == "WORSE THAN CHANCE")
    if at:
        b.note(f"At chance: {', '.join(at)} — the MCC's 95 % CI contains 0 (|MCC| < 0.05 for a single run), so "
               f"this {what} does no better than a constant or random guess, whatever its F1 says. The constant "
               "\"always vulnerable\" classifier's F1 is shown beside each F1.", "warn")
    if worse:
        b.note(f"Worse than chance: {', '.join(worse)} — the MCC lies below 0 (its CI, or ≤ −0.05 for a single "
               f"run): this {what}'s predictions run against the labels.", "warn")


def serving_plot_points(cands: Sequence[dict[str, Any]]) -> list[tradeoffs.Point]:
    """Short, unique plot labels for the serving candidates that have energy and F1.

    Unique per setting because the plot highlights Pareto members by id: "v0·onnxruntime" for
    both onnx and onnx-int8 would highlight a dominated point as well."""
    show_load = len({c["load"] for c in cands}) > 1
    return [tradeoffs.Point(f"{c['variant']}·{c['engine']}·{c['format']}" + (f"·{c['load']}" if show_load else ""),
                            c["energy_per_1k_wh"], c["accuracy"]) for c in cands
            if c["energy_per_1k_wh"] is not None and c["accuracy"] is not None]


def sec_energy_f1(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    name = tradeoffs.ACCURACY_NAMES.get(opts.accuracy_metric, opts.accuracy_metric)
    tpts = tradeoffs.training_points(agg.train, opts.train_energy_metric, opts.accuracy_metric)
    cands = tradeoffs.serving_candidates(agg.serve, agg.train, an["serve_metric"], opts.accuracy_metric)
    spts = serving_plot_points(cands)
    if not tpts and not spts:
        b.note(f"No result has both an energy figure and a {name}, so there is no trade-off to plot.", "warn")
        return
    tl = "; ".join(sorted({e["label"] for e in agg.train.values()}))
    sl = "; ".join(sorted({e["label"] for e in agg.serve.values()}))
    baseline = {"mcc": 0.0, "pair_accuracy": 0.5}.get(opts.accuracy_metric)
    if opts.accuracy_metric == "f1":
        bases = [(e["metrics"].get("baseline_f1") or {}).get("mean") for e in agg.train.values()]
        bases = [x for x in bases if x is not None]
        baseline = sum(bases) / len(bases) if bases else None
    b.figure(plots.fig_energy_f1(tpts, spts, tl, sl, opts.train_energy_metric, accuracy_name=name,
                                 baseline=baseline, serve_metric_label=an["serve_metric_label"]),
             f"Energy vs {name}; highlighted points and dashed line: the Pareto front (lower energy, higher "
             f"{name}); dotted line: the constant / chance baseline")
    for title, f, comp in (("Training", an["findings_training"], an["training_comparable"]),
                           ("Serving", an["findings_serving"], an["serving_comparable"])):
        if comp:
            b.note(f"{title} Pareto front: {comp} — the settings were measured or built differently, so one "
                   "front over them would compare unlike numbers. The points are shown for inspection only.", "warn")
        elif f.get("pareto"):
            b.p(f"{title} Pareto front: " + ", ".join(x.replace("__", " · ") for x in f["pareto"]) + ".")
    b.p(f"Serving energy axis: {an['serve_metric_label']}. Accuracy axis: {name} "
        "(--accuracy-metric f1|mcc|pair_accuracy).")
    if spts and any(c["accuracy_source"] == "training test split" for c in cands):
        b.note(f"Some serving points use the variant's test-split {name} from training, because their load run "
               "did not score responses (see the findings table's source column).")


def sec_serving_energy(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    if not agg.serve:
        b.note("No successful load runs (results/load/<engine>__<variant>/<run_id>/summary.json) were found.",
               "warn")
        return
    metric, label = an["serve_metric"], an["serve_metric_label"]
    b.figure(plots.fig_serving_energy(agg.serve, metric),
             f"Energy per 1,000 successful requests in the steady window, by engine and variant (95 % CI): {label}")
    rows = []
    for key in sorted(agg.serve, key=lambda k: (plots.variant_sort_key(agg.serve[k]["variant"]), k)):
        e = agg.serve[key]
        rows.append([e["engine"], e["variant"], e["format"], e["load"], e["n"],
                     metric_ci(e, "energy_per_1k_wh.server"), metric_ci(e, "energy_per_1k_wh.gross"),
                     metric_ci(e, "energy_per_1k_wh.net"), metric_ci(e, "attribution.server_share"),
                     metric_ci(e, "throughput_rps"), metric_ci(e, "served.mcc"), metric_ci(e, "served.f1"),
                     metric_ci(e, "served.baseline_f1"), _accuracy_verdict(e, "served."), _counts(e),
                     ", ".join(e.get("flags") or []) or "—", e["label"]])
    b.table(["engine", "variant", "format", "load", "n", "Wh/1k server-attributed", "Wh/1k gross", "Wh/1k net",
             "server share", "throughput [req/s]", "served MCC", "served F1", "constant-baseline F1",
             "accuracy verdict", "client / server count", "flags", "energy (kind · meter)"], rows)
    b.p(f"Headline column: {label}. Gross is the whole machine over the steady window (it includes the load "
        "client, which shares these cores); net subtracts the idle baseline; server-attributed charges the "
        "server's process tree its CPU-time share of the window's energy (and every GPU joule). Cells show "
        "mean [95 % CI] over load repeats; a bare number is a single repeat (n = 1).")
    _chance_note(b, {k.replace("__", " · "): chance_flag(e, "served.") for k, e in agg.serve.items()},
                 "served model")


def _counts(e: dict[str, Any]) -> str:
    """``"812 / 812"``, or ``"812 / 790 MISMATCH"`` when the client and server counts differ."""
    c = (e["metrics"].get("requests.client_counted") or {}).get("mean")
    s = (e["metrics"].get("requests.server_counted") or {}).get("mean")
    if c is None and s is None:
        return "—"
    mismatch = "count_mismatch" in (e.get("flags") or []) or (c is not None and s is not None and c != s)
    return f"{fmt(c)} / {fmt(s)}" + (" MISMATCH" if mismatch else "")


def sec_latency(b: Builder, agg: Aggregate, an: dict[str, Any], opts: ReportOptions) -> None:
    if not agg.serve or not any("latency_ms.p99" in e["metrics"] for e in agg.serve.values()):
        b.note("No latency percentiles in the load results.", "warn")
        return
    b.figure(plots.fig_latency(agg.serve), "Client-side latency percentiles per serving setting (95 % CI)")
    rows = []
    for key in sorted(agg.serve, key=lambda k: (plots.variant_sort_key(agg.serve[k]["variant"]), k)):
        e = agg.serve[key]
        rows.append([e["engine"], e["variant"], e["format"], e["load"],
                     *[metric_ci(e, f"latency_ms.{q}") for q in ("p50", "p90", "p95", "p99")]])
    b.table(["engine", "variant", "format", "load", "p50 [ms]", "p90 [ms]", "p95 [ms]", "p99 [ms]"], rows)
    if any(e.get("latency_basis") == "intended" for e in agg.serve.values()):
        b.p("Open-loop settings report latency from the intended send time of each arrival (coordinated "
            "omission corrected), so a client that fell behind does not flatter the server.")


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
    d = agg.results_dir / "sweep"
    csv, best_p = d / "aggregate.csv", d / "best.json"
    if not csv.is_file() or csv.stat().st_size < 2 or not best_p.is_file():
        b.note("No sweep has been run (make sweep N=4 writes results/sweep/study.db, aggregate.csv and best.json).")
        return
    from analysis.io import read_json

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


SECTIONS: tuple[tuple[str, str, Callable], ...] = (
    ("overview", "Overview", sec_overview),
    ("training-energy", "Training energy per stage", sec_training_energy),
    ("energy-f1", "Energy vs accuracy and the Pareto front", sec_energy_f1),
    ("serving-energy", "Serving energy per 1k requests", sec_serving_energy),
    ("latency", "Latency percentiles", sec_latency),
    ("power-timeline", "Power timeline of a load run", sec_power_timeline),
    ("stacking", "Do savings stack?", sec_stacking),
    ("lifecycle", "Lifecycle projection: a year of serving", sec_lifecycle),
    ("findings", "SLO-constrained choice and key findings", sec_findings),
    ("compression", "Compression: size, accuracy, energy and break-even", compression.section),
    ("sweep", "Sweep (Optuna study)", sec_sweep),
    ("failed", "Failed and incomplete runs", sec_failed),
    ("methods", "Methods and honesty note", sec_methods),
)
assert tuple(s[0] for s in SECTIONS) == SECTION_IDS


CSS = """
:root{--fg:#1d2430;--muted:#5b6675;--bg:#f6f7f9;--card:#fff;--acc:#1b6ca8;--ok:#2a9d5c;--warn:#c77c02;--err:#c0392b}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--fg);background:var(--bg)}header{background:linear-gradient(120deg,#0b3d2e,#1b6ca8);color:#fff;
padding:28px 40px}header h1{margin:0 0 4px;font-size:26px}header p{margin:0;opacity:.85}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #e3e6ea;padding:8px 40px;z-index:2;
display:flex;flex-wrap:wrap;gap:6px 16px;font-size:13px}nav a{color:var(--acc);text-decoration:none}
main{max-width:1180px;margin:0 auto;padding:20px 40px 60px}section{background:var(--card);border-radius:10px;
box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 24px;margin:18px 0}section h2{margin:0 0 10px;font-size:20px;
border-bottom:2px solid #eef1f4;padding-bottom:6px}h3{font-size:16px;margin:16px 0 6px}
figure{margin:10px 0;text-align:center}figure img{max-width:100%;height:auto;border:1px solid #eef1f4;border-radius:6px}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}.tw{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}th,td{padding:5px 8px;border-bottom:1px solid #eceff2;
text-align:left;vertical-align:top}th{background:#f1f4f7;font-weight:600}tr.hl td{background:#e8f6ee;font-weight:600}
tbody tr:hover td{background:#f8fafc}.note{padding:8px 12px;border-radius:6px;border-left:4px solid var(--acc);background:#eef5fb}
.note.warn{border-color:var(--warn);background:#fdf5e6}.note.ok{border-color:var(--ok);background:#e8f6ee}
.note.err{border-color:var(--err);background:#fbeaea}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 12px}
.card{flex:1 1 170px;background:#f6f9fc;border:1px solid #e3e9ef;border-radius:8px;padding:10px 14px}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:20px;font-weight:700}
.banner{background:#c0392b;color:#fff;text-align:center;padding:8px;font-weight:700;letter-spacing:.05em}
pre{white-space:pre-wrap;font-size:12px;background:#f4f4f4;padding:8px;border-radius:6px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:20px}
"""


def build_sections(agg: Aggregate, an: dict[str, Any], opts: ReportOptions, fig_dir: Path) -> list[Section]:
    """Build every section; an exception inside one section becomes an error note in it."""
    out = []
    for sid, title, fn in SECTIONS:
        b = Builder(fig_dir, sid)
        try:
            fn(b, agg, an, opts)
        except Exception as e:  # a broken section must not take the whole report down
            tb = traceback.format_exc(limit=3)
            b.note(f"This section could not be built: {type(e).__name__}: {e}", "err")
            b.raw(f"<pre>{esc(tb)}</pre>", f"```\n{tb}\n```")
        out.append(Section(sid, title, "\n".join(b.h), "\n\n".join(b.m)))
    return out


def render_html(sections: list[Section], synthetic: bool, generated: str) -> str:
    nav = " ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>\n{s.html}\n</section>' for s in sections)
    banner = ('<div class="banner">SYNTHETIC DATA — these results come from a generated fixture, '
              "not from a measurement</div>") if synthetic else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>green-pipeline-study — report</title>
<style>{CSS}</style></head>
<body>{banner}
<header><h1>green-pipeline-study — what do energy-saving techniques really save?</h1>
<p>ModernBERT vulnerability detector (BigVul): training and serving energy, latency and F1 per technique
and serving stack. Generated {esc(generated)}.</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<footer>Self-contained report: figures are embedded; no network access needed.</footer>
</body></html>
"""


def render_md(sections: list[Section], synthetic: bool, generated: str) -> str:
    parts = ["# green-pipeline-study — report", "", f"Generated {generated}."]
    if synthetic:
        parts += ["", "> **SYNTHETIC DATA** — these results come from a generated fixture, not from a measurement."]
    for s in sections:
        parts += ["", f'<a id="{s.id}"></a>', "", f"## {s.title}", "", s.md]
    return "\n".join(parts) + "\n"


def build_report(results_dir: str | Path = "results", out: str | Path | None = None,
                 opts: ReportOptions | None = None) -> dict[str, Path]:
    """Aggregate, analyse, plot and write the report; returns the paths written."""
    opts = opts or ReportOptions()
    results_dir = Path(results_dir)
    out = Path(out) if out else results_dir / "report"
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):  # figures of an earlier build would otherwise linger beside report.md
        old.unlink()
    agg = aggregate(results_dir, write=True)
    an = analyse(agg, opts)
    tables = results_dir / "tables"
    stack_rows = an["stacking_training"] + an["stacking_serving"]
    write_table_atomic(pd.DataFrame([{k: (str(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
                                     for r in stack_rows]), tables / "stacking.csv")
    write_table_atomic(pd.DataFrame(an["lifecycle"]), tables / "lifecycle.csv")
    write_json_atomic(out / "analysis.json", an)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    sections = build_sections(agg, an, opts, fig_dir)
    synthetic = _is_synthetic(agg)
    paths = {
        "html": write_text_atomic(out / "index.html", render_html(sections, synthetic, generated)),
        "md": write_text_atomic(out / "report.md", render_md(sections, synthetic, generated)),
        "analysis": out / "analysis.json",
        "aggregated_metrics": results_dir / "aggregated_metrics.json",
    }
    _print_summary(agg, an, paths["html"])
    return paths


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
    ap.add_argument("--results-dir", default="results", help="results root (default: results)")
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


if __name__ == "__main__":
    sys.exit(main())
