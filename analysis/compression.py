"""The compression study in the report: size vs accuracy vs compression energy vs serving energy,
key findings and the break-even point.

Reads ``<results>/compress/*/result.json`` (written by ``python -m training.compress``) and,
for the served energy, the ``serve`` entries of the aggregate. The report calls
:func:`section`; the aggregate calls :func:`collect` / :func:`summarise`.

**Break-even**: compressing costs ``E_c`` once (the ``compress`` window, Wh); serving then costs
``S_c`` instead of the parent's ``S_p`` Wh per 1k requests (same engine, format and load
setting). The compression has paid for itself after ``N = 1000 · E_c / (S_p − S_c)`` requests;
with ``S_c ≥ S_p`` it never does. When the two serving figures' 95 % CIs overlap, the saving
(and so ``N``) is not distinguishable from noise and the table says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.io import as_float, get_path, read_json
from study.paths import Paths

# Columns read from a compression result.json (dotted keys).
COLUMNS = (
    "energy_kwh.compress", "energy_net_kwh.compress", "duration_s.compress", "size_mb", "params",
    "nonzero_params", "prunable_params", "sparsity", "flops_per_request", "accuracy", "f1", "mcc",
    "weights_gzip_mb", "finetune_steps",
    "parent_figures.size_mb", "parent_figures.params", "parent_figures.nonzero_params",
    "parent_figures.sparsity", "parent_figures.flops_per_request", "parent_figures.accuracy",
    "parent_figures.f1", "parent_figures.mcc", "parent_figures.weights_gzip_mb",
    "parent_figures.train_energy_kwh",
)


def collect(results: Paths | str | Path | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per ``<results>/compress/<variant>/result.json`` and the failed/unreadable ones as
    failed-table rows (``stage: compress``); ``results`` is the layout or its results root."""
    paths = results if isinstance(results, Paths) else Paths.from_env(results=results)
    root = paths.compress_root
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    if not root.is_dir():
        return pd.DataFrame(rows), problems
    for path in sorted(root.glob("*/result.json")):
        rel = str(path.relative_to(paths.results))
        try:
            obj = read_json(path)
        except (OSError, ValueError) as e:
            problems.append({"stage": "compress", "variant": path.parent.name, "run_id": None,
                             "status": "unreadable", "failure_reason": f"{type(e).__name__}: {e}", "path": rel})
            continue
        row: dict[str, Any] = {
            "variant": str(obj.get("variant") or path.parent.name), "parent": obj.get("parent"),
            "method": obj.get("method"), "method_family": obj.get("method_family"),
            "run_id": obj.get("run_id"), "status": str(obj.get("status") or "failed"),
            "failure_reason": obj.get("failure_reason"), "energy_kind": obj.get("energy_kind"),
            "energy_source": get_path(obj, "energy_source.compress"),
            "serving_note": obj.get("serving_note"), "path": rel,
        }
        row.update({k: as_float(get_path(obj, k)) for k in COLUMNS})
        rows.append(row)
        if row["status"] != "ok":
            problems.append({"stage": "compress", "variant": row["variant"], "run_id": row["run_id"],
                             "status": row["status"], "failure_reason": row["failure_reason"], "path": rel})
    return pd.DataFrame(rows), problems


def summarise(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``{variant: row}`` of the ok compression results (for ``aggregated_metrics.json``)."""
    if df.empty:
        return {}
    ok = df[df["status"] == "ok"]
    return {str(r["variant"]): {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in ok.to_dict(orient="records")}


def _mean_ci(entry: dict[str, Any], metric: str) -> tuple[float | None, list[float] | None]:
    s = (entry.get("metrics") or {}).get(metric) or {}
    return s.get("mean"), s.get("ci95")


def break_even(compress: dict[str, dict[str, Any]], serve: dict[str, dict[str, Any]],
               metric: str = "energy_per_1k_wh.gross") -> list[dict[str, Any]]:
    """One row per compressed variant × serving setting that has the parent served the same way.

    ``requests`` is the break-even count (``None`` when the compressed model is not cheaper per
    request); ``significant`` is False when the two serving CIs overlap (or are missing).
    """
    rows = []
    for variant, c in sorted(compress.items()):
        e_c_kwh = c.get("energy_kwh.compress")
        for e in serve.values():
            if e.get("variant") != variant:
                continue
            par = next((p for p in serve.values() if p.get("variant") == c.get("parent")
                        and p.get("engine") == e.get("engine") and p.get("format") == e.get("format")
                        and p.get("load") == e.get("load") and p.get("meter") == e.get("meter")), None)
            if par is None:
                continue
            s_c, ci_c = _mean_ci(e, metric)
            s_p, ci_p = _mean_ci(par, metric)
            if s_c is None or s_p is None or e_c_kwh is None:
                continue
            saving = s_p - s_c  # Wh per 1k requests
            n = 1000.0 * e_c_kwh * 1000.0 / saving if saving > 0 else None
            significant = bool(ci_c and ci_p and (ci_c[1] < ci_p[0] or ci_c[0] > ci_p[1]))
            rows.append({
                "variant": variant, "parent": c.get("parent"), "method_family": c.get("method_family"),
                "engine": e.get("engine"), "format": e.get("format"), "load": e.get("load"),
                "compress_wh": e_c_kwh * 1000.0, "serve_wh_per_1k": s_c, "parent_serve_wh_per_1k": s_p,
                "saving_wh_per_1k": saving, "requests": n, "significant": significant,
                "n_serve": (e.get("metrics", {}).get(metric) or {}).get("n"),
                "n_parent": (par.get("metrics", {}).get(metric) or {}).get("n"),
                "label": e.get("label"), "parent_label": par.get("label"),
                "served_f1": _mean_ci(e, "served.f1")[0], "parent_served_f1": _mean_ci(par, "served.f1")[0],
            })
    return rows


def _points(compress: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Compressed variants and their parents as plot/finding points."""
    pts: dict[str, dict[str, Any]] = {}
    for v, c in compress.items():
        pts[v] = {"id": v, "size_mb": c.get("size_mb"), "accuracy": c.get("accuracy"), "f1": c.get("f1"),
                  "mcc": c.get("mcc"), "compress_kwh": c.get("energy_kwh.compress"), "parent": False,
                  "family": c.get("method_family")}
        p = c.get("parent")
        if p and p not in pts:
            pts[p] = {"id": p, "size_mb": c.get("parent_figures.size_mb"), "accuracy": c.get("parent_figures.accuracy"),
                      "f1": c.get("parent_figures.f1"), "mcc": c.get("parent_figures.mcc"), "compress_kwh": 0.0,
                      "parent": True, "family": "parent"}
    return list(pts.values())


def findings(compress: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best accuracy, smallest, and the best size–accuracy trade-off (Pareto point nearest the
    ideal corner after min–max scaling, as :func:`analysis.tradeoffs.best_tradeoff`)."""
    from analysis.tradeoffs import Point, key_findings

    pts = [Point(p["id"], p["size_mb"], p["accuracy"]) for p in _points(compress)
           if p["size_mb"] is not None and p["accuracy"] is not None]
    return key_findings(pts, "MB")


def figure(compress: dict[str, dict[str, Any]], serve: dict[str, dict[str, Any]], metric: str, label: str):
    """The seed's three trade-off plots (size–accuracy, compression energy–accuracy,
    compression energy–size) plus served energy per 1k requests vs accuracy."""
    from analysis.plots import PALETTE, footnote, plt

    pts = [p for p in _points(compress) if p["size_mb"] is not None and p["accuracy"] is not None]
    fams = sorted({p["family"] for p in pts})
    color = {f: ("#222" if f == "parent" else PALETTE[i % len(PALETTE)]) for i, f in enumerate(fams)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))

    def scatter(ax, xs, ys, title, xl, yl):
        for p, x, y in zip(pts, xs, ys, strict=True):
            if x is None or y is None:
                continue
            ax.scatter([x], [y], color=color[p["family"]], marker="*" if p["parent"] else "o",
                       s=140 if p["parent"] else 50, zorder=3)
            ax.annotate(p["id"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)

    wh = [None if p["compress_kwh"] is None else p["compress_kwh"] * 1000 for p in pts]
    scatter(axes[0][0], [p["size_mb"] for p in pts], [p["accuracy"] for p in pts], "Size vs accuracy",
            "model size [MB]", "test accuracy")
    scatter(axes[0][1], wh, [p["accuracy"] for p in pts], "Compression energy vs accuracy",
            "compression step energy [Wh] (parent: 0)", "test accuracy")
    scatter(axes[1][0], wh, [p["size_mb"] for p in pts], "Compression energy vs size",
            "compression step energy [Wh] (parent: 0)", "model size [MB]")
    ax = axes[1][1]
    served = 0
    for e in serve.values():
        v = e.get("variant")
        c = compress.get(v) or next((c for c in compress.values() if c.get("parent") == v), None)
        if c is None:
            continue
        s, _ = _mean_ci(e, metric)
        acc = c.get("accuracy") if v in compress else c.get("parent_figures.accuracy")
        if s is None or acc is None:
            continue
        fam = c.get("method_family") if v in compress else "parent"
        ax.scatter([s], [acc], color=color.get(fam, "#888"), marker="*" if v not in compress else "o",
                   s=140 if v not in compress else 50, zorder=3)
        ax.annotate(f"{v} · {e.get('engine')}/{e.get('format')}", (s, acc), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
        served += 1
    ax.set_title("Served energy per 1k requests vs accuracy")
    ax.set_xlabel(f"{metric.replace('energy_per_1k_wh.', '')} Wh per 1k requests")
    ax.set_ylabel("test accuracy")
    if not served:
        ax.text(0.5, 0.5, "no load run of a compressed variant and its parent", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="#666")
    fig.tight_layout()
    footnote(fig, label, "stars = parents; accuracy on the parent's test split")
    return fig


def section(b, agg, an: dict[str, Any], opts) -> None:
    """The report's ``compression`` section (called by analysis.report)."""
    from analysis.aggregate import energy_label
    from analysis.report import fmt

    comp: dict[str, dict[str, Any]] = agg.metrics.get("compress") or {}
    if not comp:
        b.note("No compression results yet: run `make compress VARIANT=v0 METHOD=magnitude-50` (or "
               "structured-25, ptq-dynamic, qat, distill-1), then `make load ENGINE=onnxruntime "
               "VARIANT=v0@structured-25` and the parent's load for the break-even point.", "warn")
        return
    label = energy_label([c.get("energy_kind") for c in comp.values()],
                         [c.get("energy_source") for c in comp.values()])
    b.p("Each compressed variant <parent>@<method> is made from its trained parent by `make compress`; the "
        "compression step's own energy is the `compress` window (pruning, quantising, fine-tuning or "
        "distilling; evaluation and saving are measured beside it). Size, parameters, sparsity (share of zero "
        "encoder Linear weights) and FLOPs per request (torch FlopCounterMode, one request at the served max "
        f"length) are measured on the saved artifact, accuracy on the parent's test split. Energy: {label}.")
    rows = []
    for v, c in sorted(comp.items()):
        rows.append([v, fmt(c.get("size_mb")), fmt(c.get("parent_figures.size_mb")), fmt(c.get("weights_gzip_mb")),
                     f"{int(c['params']):,}" if c.get("params") is not None else "—",
                     f"{int(c['nonzero_params']):,}" if c.get("nonzero_params") is not None else "—",
                     fmt(c.get("sparsity")),
                     fmt(None if c.get("flops_per_request") is None else c["flops_per_request"] / 1e6),
                     fmt(None if c.get("parent_figures.flops_per_request") is None
                         else c["parent_figures.flops_per_request"] / 1e6),
                     fmt(c.get("accuracy")), fmt(c.get("parent_figures.accuracy")), fmt(c.get("f1")),
                     fmt(c.get("mcc")),
                     fmt(None if c.get("energy_kwh.compress") is None else c["energy_kwh.compress"] * 1000),
                     fmt(c.get("duration_s.compress")),
                     f"{c.get('energy_kind') or '—'} · {c.get('energy_source') or '—'}"])
    b.table(["variant", "size MB", "parent MB", "gzip MB", "params", "non-zero", "sparsity", "MFLOP/req",
             "parent MFLOP/req", "accuracy", "parent acc.", "F1", "MCC", "compress Wh", "compress s",
             "energy (kind · meter)"], rows)
    b.figure(figure(comp, agg.serve, an.get("serve_metric", opts.serve_energy_metric), label),
             "Compression trade-offs: size, accuracy, the compression step's energy and served energy per 1k")

    b.raw("<h3>Key findings</h3>", "### Key findings")
    f = findings(comp)
    frows = []
    for name, k in (("best accuracy", "best_accuracy"), ("smallest", "lowest_energy"),
                    ("best size–accuracy trade-off", "best_tradeoff")):
        p = f.get(k)
        if p:
            frows.append([name, p["id"], fmt(p["energy"]), fmt(p["accuracy"])])
    if frows:
        b.table(["finding", "which", "size MB", "accuracy"], frows)
        b.p("Best trade-off: the size–accuracy Pareto point nearest the ideal corner (smallest, most accurate) "
            "after scaling both axes to [0, 1]; parents are candidates too.")

    b.raw("<h3>Break-even: when does the compression pay for itself?</h3>",
          "### Break-even: when does the compression pay for itself?")
    be = break_even(comp, agg.serve, an.get("serve_metric", opts.serve_energy_metric))
    if not be:
        b.note("No break-even point: it needs a load run of a compressed variant and of its parent on the same "
               "engine, format and load setting (e.g. `make load ENGINE=onnxruntime VARIANT=v0` and "
               "`VARIANT=v0@structured-25`).", "warn")
    else:
        brows = []
        for r in be:
            if r["method_family"] == "magnitude":
                # zeros are multiplied like any weight: no break-even is claimed from noise
                verdict = ("none expected: dense kernels do not skip zeros (FLOPs unchanged), so the measured "
                           f"{'saving' if r['saving_wh_per_1k'] > 0 else 'difference'} is not due to the sparsity")
            elif r["requests"] is None:
                verdict = "never (not cheaper per request)"
            elif not r["significant"]:
                verdict = f"{fmt(r['requests'])} requests — saving within noise (CIs overlap or n=1)"
            else:
                verdict = f"{fmt(r['requests'])} requests"
            brows.append([r["variant"], f"{r['engine']} · {r['format']} · {r['load']}", fmt(r["compress_wh"]),
                          fmt(r["parent_serve_wh_per_1k"]), fmt(r["serve_wh_per_1k"]), fmt(r["saving_wh_per_1k"]),
                          verdict, r.get("label") or "—"])
        b.table(["variant", "served as", "compress Wh", "parent Wh/1k", "compressed Wh/1k", "saving Wh/1k",
                 "break-even", "energy (kind · meter)"], brows)
        b.p("Break-even requests = 1000 × compression energy [Wh] ÷ (parent − compressed) Wh per 1k requests, "
            f"both from the same meter family ({an.get('serve_metric', opts.serve_energy_metric)}).")

    b.raw("<h3>What each method does to serving cost here</h3>", "### What each method does to serving cost here")
    fam_rows = sorted({(c.get("method_family") or "?", c.get("serving_note") or "") for c in comp.values()})
    b.table(["method", "effect on serving cost"], [list(r) for r in fam_rows])
    if any(c.get("method_family") == "magnitude" for c in comp.values()):
        b.note("Unstructured (magnitude) sparsity does not make dense kernels faster: the zeros are still "
               "multiplied, so FLOPs per request stay the parent's and any difference in served energy above is "
               "not caused by the sparsity. Only the gzip-compressed file shrinks.", "warn")
