"""Report sections on what was measured: overview, training energy and accuracy, the
energy/accuracy trade-off, serving energy per 1k requests, latency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analysis import plots, tradeoffs
from analysis.aggregate import STAGES, Aggregate
from analysis.report.analyses import ReportOptions, chance_flag
from analysis.report.format import Builder, esc, fmt, metric_ci


def is_synthetic(agg: Aggregate) -> bool:
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

