"""Report figures (matplotlib, Agg backend). Each returns a :class:`matplotlib.figure.Figure`.

Every figure carries a footnote saying whether its energy figures were *measured* or
*estimated* and by which meter, taken from the result files (``energy_kind``/``energy_source``
or the EnergyRecord's ``kind``/``source``), never assumed.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or the study host
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.tradeoffs import Point, pareto_front  # noqa: E402

STAGE_COLORS = {"data": "#8ecae6", "architecture": "#219ebc", "training": "#023047",
                "system": "#ffb703", "inference": "#fb8500"}
WINDOW_COLORS = {"system": "#d9d9d9", "idle": "#9ecae1", "warm-up": "#fdd0a2", "steady": "#a1d99b"}
PALETTE = ["#1b6ca8", "#e07a1f", "#2a9d5c", "#c0392b", "#7d5ba6", "#8c6d31", "#d16ba5", "#5f6b6d"]

plt.rcParams.update({
    "figure.dpi": 100, "savefig.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "axes.titleweight": "bold", "font.size": 10,
})


def variant_sort_key(name: str) -> tuple:
    """Natural order, single techniques first: v0 < v2 < v10 < v2+v7 < v2+v7+v8."""
    parts = str(name).split("+")
    nums = []
    for p in parts:
        m = re.match(r"v(\d+)", p)
        nums.append(int(m.group(1)) if m else 10**6)
    return (len(parts) > 1, len(parts), nums, name)


def energy_scale_kwh(max_kwh: float) -> tuple[float, str]:
    """A readable unit for kWh values: (multiplier, unit label)."""
    if max_kwh is None or not math.isfinite(max_kwh) or max_kwh >= 1.0:
        return 1.0, "kWh"
    if max_kwh >= 1e-3:
        return 1e3, "Wh"
    return 3.6e6, "J"


def footnote(fig: Figure, label: str, extra: str = "", prefix: str = "Energy: ") -> None:
    """Add the measured/estimated + meter label under the axes."""
    text = f"{prefix}{label}" + (f" — {extra}" if extra else "")
    # Just below the figure's bottom edge: tight_layout ignores fig.text, so a note inside the
    # figure could overlap the tick labels; savefig(bbox_inches="tight") still includes it.
    fig.text(0.01, -0.005, text, fontsize=8, color="#444", ha="left", va="top", style="italic")


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _mean(e: dict[str, Any], m: str) -> float | None:
    s = e.get("metrics", {}).get(m)
    return None if not s else s.get("mean")


def _ci(e: dict[str, Any], m: str) -> tuple[float, float] | None:
    s = e.get("metrics", {}).get(m)
    return None if not s or not s.get("ci95") else tuple(s["ci95"])  # type: ignore[return-value]


def _labels(entries: Sequence[dict[str, Any]]) -> str:
    labels = sorted({e.get("label", "") for e in entries if e.get("label")})
    return "; ".join(labels) if labels else "unknown meter"


# --------------------------------------------------------------------------- training


def fig_training_stages(train: dict[str, dict[str, Any]], stages: Sequence[str]) -> Figure:
    """Stacked per-stage training-pipeline energy per variant, with the total's 95 % CI."""
    variants = sorted(train, key=variant_sort_key)
    max_total = max((_mean(train[v], "energy_kwh.total") or 0.0) for v in variants)
    k, unit = energy_scale_kwh(max_total)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + 0.9 * len(variants)), 4.2))
    bottom = [0.0] * len(variants)
    for st in stages:
        vals = [(_mean(train[v], f"energy_kwh.{st}") or 0.0) * k for v in variants]
        ax.bar(variants, vals, bottom=bottom, color=STAGE_COLORS.get(st), label=st, edgecolor="white", linewidth=0.5)
        bottom = [b + x for b, x in zip(bottom, vals, strict=True)]
    for i, v in enumerate(variants):
        ci = _ci(train[v], "energy_kwh.total")
        n = train[v]["n"]
        if ci:
            tot = (_mean(train[v], "energy_kwh.total") or 0.0) * k
            ax.errorbar(i, tot, yerr=[[tot - ci[0] * k], [ci[1] * k - tot]], color="black", capsize=4, lw=1)
        ax.annotate(f"n={n}", (i, bottom[i]), textcoords="offset points", xytext=(0, 6 if not ci else 14),
                    ha="center", fontsize=8, color="#333")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.08)  # headroom for the n= labels under the title
    ax.set_ylabel(f"energy per training run [{unit}]")
    ax.set_xlabel("variant")
    ax.set_title("Training pipeline energy per stage")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="stage", fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    footnote(fig, _labels(list(train.values())), "error bars: 95 % CI of the total (t, over repeats)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- trade-offs


def _pareto_axis(ax, pts: Sequence[Point], xlabel: str, title: str, scale: float = 1.0,
                 ylabel: str = "F1 (test split)", baseline: float | None = None,
                 baseline_label: str = "constant baseline") -> None:
    front = pareto_front(pts)
    front_ids = {p.id for p in front}
    seen_f1: dict[float, int] = {}
    for p in sorted(pts, key=lambda q: q.energy):
        on = p.id in front_ids
        ax.scatter(p.energy * scale, p.accuracy, s=60 if on else 36, color="#1b6ca8" if on else "#9aa5ad",
                   edgecolor="black" if on else "none", zorder=3)
        # points with equal F1 (common for small test sets) get staggered labels so they stay legible
        k = seen_f1.get(round(p.accuracy, 6), 0)
        seen_f1[round(p.accuracy, 6)] = k + 1
        ax.annotate(p.id, (p.energy * scale, p.accuracy), textcoords="offset points",
                    xytext=(4, 4 + 9 * (k % 3) if k % 2 == 0 else -10 - 9 * (k % 3)), fontsize=8)
    if len(front) > 1:
        xs, ys = [], []
        for p in front:  # staircase: F1 achievable at or above this energy
            if xs:
                xs.append(p.energy * scale)
                ys.append(ys[-1])
            xs.append(p.energy * scale)
            ys.append(p.accuracy)
        ax.plot(xs, ys, color="#1b6ca8", lw=1.5, ls="--", zorder=2, label="Pareto front")
        ax.legend(fontsize=8, loc="best")  # "lower right" hid the high-energy, low-F1 points
    if baseline is not None:
        ax.axhline(baseline, color="#c0392b", lw=1.2, ls=":", zorder=1, label=baseline_label)
        ax.legend(fontsize=8, loc="best")
    ax.margins(x=0.12, y=0.08)  # room for the point labels at the edges
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def fig_energy_f1(train_pts: Sequence[Point], serve_pts: Sequence[Point], train_label: str,
                  serve_label: str, train_metric: str = "energy_kwh.training", *,
                  accuracy_name: str = "F1", baseline: float | None = None,
                  serve_metric_label: str = "serving energy per 1k requests [Wh]") -> Figure:
    """Energy vs accuracy scatter with the Pareto front (training; serving when available) and
    the constant / chance baseline as a dotted line (MCC 0, pair accuracy 0.5, the constant
    classifier's F1)."""
    panels = [x for x in ((train_pts, "train"), (serve_pts, "serve")) if x[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    base_label = "chance / constant baseline"
    for ax, (pts, kind) in zip(axes[0], panels, strict=True):
        if kind == "train":
            k, unit = energy_scale_kwh(max(p.energy for p in pts))
            _pareto_axis(ax, pts, f"{train_metric.split('.')[-1]} energy per run [{unit}]",
                         f"Training: energy vs {accuracy_name}", scale=k,
                         ylabel=f"{accuracy_name} (test split)", baseline=baseline, baseline_label=base_label)
        else:
            _pareto_axis(ax, pts, serve_metric_label.split(" (")[0].split(" —")[0] + " [Wh/1k]",
                         f"Serving: energy vs {accuracy_name}",
                         ylabel=f"{accuracy_name} (served, else test split)", baseline=baseline,
                         baseline_label=base_label)
    labels = []
    if train_pts:
        labels.append(f"training {train_label}")
    if serve_pts:
        labels.append(f"serving {serve_label}")
    footnote(fig, "; ".join(labels), f"Pareto front: no other point has lower energy and higher {accuracy_name}")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- serving


def _stack_label(e: dict[str, Any], show_load: bool) -> str:
    lab = f"{e['engine']} ({e['format']})" if e.get("format") else e["engine"]
    return f"{lab} {e['load']}" if show_load else lab


def fig_serving_energy(serve: dict[str, dict[str, Any]], metric: str = "energy_per_1k_wh.gross") -> Figure:
    """Energy per 1k requests, grouped by variant, one bar per engine (format), with CI bars."""
    entries = list(serve.values())
    show_load = len({e["load"] for e in entries}) > 1
    stacks = sorted({_stack_label(e, show_load) for e in entries})
    variants = sorted({e["variant"] for e in entries}, key=variant_sort_key)
    width = 0.8 / max(1, len(stacks))
    # which stacks have a bar at each variant, so a variant's bars are centred on its tick
    present = {v: [st for st in stacks if any(x["variant"] == v and _stack_label(x, show_load) == st
                                              and _mean(x, metric) is not None for x in entries)]
               for v in variants}
    fig, ax = plt.subplots(figsize=(max(6.5, 1.2 + 1.1 * len(variants) * max(1, len(stacks)) * 0.6), 4.4))
    for j, st in enumerate(stacks):
        xs, ys, lo, hi = [], [], [], []
        for i, v in enumerate(variants):
            e = next((x for x in entries if x["variant"] == v and _stack_label(x, show_load) == st), None)
            m = None if e is None else _mean(e, metric)
            if m is None:
                continue
            ci = _ci(e, metric)
            here = present[v]
            xs.append(i + width * (here.index(st) - (len(here) - 1) / 2))
            ys.append(m)
            # NaN, not 0: n = 1 has no interval, and a zero-width bar would look like one
            lo.append(m - ci[0] if ci else math.nan)
            hi.append(ci[1] - m if ci else math.nan)
            if not ci:
                ax.annotate("n=1", (xs[-1], m), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
        ax.bar(xs, ys, width=width * 0.95, color=PALETTE[j % len(PALETTE)], label=st,
               yerr=[lo, hi], capsize=3, error_kw={"lw": 1})
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels(variants)
    ax.set_xlabel("variant")
    which = metric.split(".")[-1]
    ax.set_ylabel(f"energy per 1k requests, {which} [Wh]")
    ax.set_title("Serving energy per 1,000 requests (steady window)")
    ax.legend(title="engine (format)", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    footnote(fig, _labels(entries), "error bars: 95 % CI over load repeats (t)")
    fig.tight_layout()
    return fig


def fig_latency(serve: dict[str, dict[str, Any]]) -> Figure:
    """Latency percentiles (p50/p90/p95/p99) per engine × variant setting."""
    entries = sorted(serve.values(), key=lambda e: (variant_sort_key(e["variant"]), e["engine"], e["format"]))
    show_load = len({e["load"] for e in entries}) > 1
    qs = ("p50", "p90", "p95", "p99")
    # variant / engine / (format) on separate lines: "onnxruntime (onnx-int8)" is wider than a group
    labels = ["\n".join([e["variant"], *_stack_label(e, show_load).split(" ")]) for e in entries]
    width = 0.8 / len(qs)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.0 + 1.15 * len(entries)), 4.4))
    for j, q in enumerate(qs):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(entries))]
        ys = [_mean(e, f"latency_ms.{q}") or 0.0 for e in entries]
        err = []
        for e, y in zip(entries, ys, strict=True):
            ci = _ci(e, f"latency_ms.{q}")
            err.append((y - ci[0], ci[1] - y) if ci else (math.nan, math.nan))  # n = 1: no bar
        ax.bar(xs, ys, width=width * 0.95, label=q, color=PALETTE[j],
               yerr=[[a for a, _ in err], [b for _, b in err]], capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("request latency [ms]")
    ax.set_title("Latency percentiles per serving setting (client-side, steady window)")
    ax.legend(title="percentile", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    footnote(fig, "measured by the load client (wall clock); no energy on this figure",
             "error bars: 95 % CI over load repeats", prefix="Latency: ")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- power timeline


def read_power(path: str | Path) -> pd.DataFrame:
    """A power CSV as a frame; ``power_w`` derived from the ``energy_j`` counter where empty."""
    df = pd.read_csv(path, on_bad_lines="skip")  # a killed sidecar may leave a torn last line
    for c in ("t_unix_s", "power_w", "energy_j"):
        df[c] = pd.to_numeric(df.get(c), errors="coerce")
    if "kind" in df.columns:
        df = df[df["kind"].notna()]  # a torn last line (killed writer) lacks its trailing columns
    df["flag"] = df.get("flag", pd.Series([""] * len(df))).fillna("").astype(str)
    out = []
    for _dev, sub in df.sort_values("t_unix_s").groupby("device"):
        sub = sub.copy()
        if sub["energy_j"].notna().any():  # counter-only rows: power from the counter's slope
            derived = sub["energy_j"].interpolate(limit_area="inside").diff() / sub["t_unix_s"].diff()
            sub["power_w"] = sub["power_w"].fillna(derived.where(derived >= 0))  # < 0: counter reset
        sub.loc[sub["flag"] != "", "power_w"] = float("nan")  # break the line at gaps/resets
        out.append(sub)
    return pd.concat(out) if out else df


def timeline_windows(rep: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Window bounds from a load-run row: system, idle, warm-up (idle end → steady start), steady."""
    w: dict[str, tuple[float, float]] = {}
    for name, key in (("system", "system"), ("idle", "idle"), ("steady", "inference")):
        s, e = rep.get(f"window.{key}.start_unix_s"), rep.get(f"window.{key}.end_unix_s")
        if s is not None and e is not None and not (pd.isna(s) or pd.isna(e)):
            w[name] = (float(s), float(e))
    s, e = rep.get("window.warmup.start_unix_s"), rep.get("window.warmup.end_unix_s")
    if s is not None and e is not None and not (pd.isna(s) or pd.isna(e)):
        w["warm-up"] = (float(s), float(e))  # the load test recorded its warm-up window
    elif "idle" in w and "steady" in w and w["steady"][0] > w["idle"][1]:
        w["warm-up"] = (w["idle"][1], w["steady"][0])
    elif "system" in w and "steady" in w and w["steady"][0] > w["system"][1]:
        w["warm-up"] = (w["system"][1], w["steady"][0])
    return w


def fig_power_timelines(runs: Sequence[dict[str, Any]], results_dir: Path) -> Figure:
    """One panel per load run: power over time with the measurement windows shaded."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(11.5, 2.6 * len(runs) + 0.6), squeeze=False)
    labels = []
    for ax, rep in zip(axes[:, 0], runs, strict=True):
        df = read_power(results_dir / rep["power_csv"])
        wins = timeline_windows(rep)
        t0 = min([df["t_unix_s"].min(), *[a for a, _ in wins.values()]])
        for name in ("system", "idle", "warm-up", "steady"):
            if name in wins:
                a, b = wins[name]
                ax.axvspan(a - t0, b - t0, color=WINDOW_COLORS[name], alpha=0.55, lw=0, zorder=0)
        for j, (dev, sub) in enumerate(df.groupby("device")):
            src = ",".join(sorted({str(s) for s in sub.get("source", pd.Series(dtype=str)).dropna()}))
            kind = ",".join(sorted({str(s) for s in sub.get("kind", pd.Series(dtype=str)).dropna()}))
            labels.append(f"{kind} · {src}")
            ax.plot(sub["t_unix_s"] - t0, sub["power_w"], lw=1.0, color=PALETTE[j % len(PALETTE)],
                    label=f"{dev} ({kind}, {src})", zorder=2)
        try:
            from energy.trace import read_marks

            edges = [x for ab in wins.values() for x in ab]
            for name, t in read_marks(results_dir / rep["power_csv"]):
                if any(abs(t - x) < 0.05 for x in edges):
                    continue  # the shaded window already shows this instant
                ax.axvline(t - t0, color="#555", lw=0.8, ls=":")
                ax.annotate(name, (t - t0, 0.03), xycoords=("data", "axes fraction"), fontsize=7,
                            rotation=90, va="bottom", ha="right", color="#555")
        except Exception:  # marks are optional decoration; a missing/odd marks file must not break the figure
            pass
        ax.set_title(f"{rep['engine']} · {rep['variant']} · {rep['format']} · {rep['load']}  "
                     f"(run {rep['run_id']}, repeat {rep['repeat']})", fontsize=9)
        ax.set_ylabel("power [W]")
        ax.set_xlim(left=0)
        top = df["power_w"].max()
        ax.set_ylim(0, (top if pd.notna(top) and top > 0 else 1.0) * 1.15)
        handles, _ = ax.get_legend_handles_labels()
        handles += [Patch(color=WINDOW_COLORS[n], alpha=0.55, label=n) for n in ("system", "idle", "warm-up", "steady")
                    if n in wins]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes[-1, 0].set_xlabel("time since start of trace [s]")
    fig.suptitle("Power during a load run, with measurement windows", fontweight="bold")
    footnote(fig, "; ".join(sorted(set(labels))) or "unknown meter",
             "shaded: system (server start/load), idle baseline, warm-up, steady load window")
    fig.tight_layout()
    return fig


def fig_sweep(pts: Sequence[Point], label: str, metric: str = "energy_kwh.training",
              accuracy: str = "F1 (test split)") -> Figure:
    """Sweep trials: energy (a kWh metric, or Wh per 1k requests) vs accuracy, with the Pareto front."""
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    if "energy_per_1k_wh" in metric:
        k, xlabel = 1.0, f"{metric.split('.')[-1]} energy per 1k requests [Wh]"
    else:
        k, unit = energy_scale_kwh(max(p.energy for p in pts))
        xlabel = f"{metric.split('.')[-1]} energy per run [{unit}]"
    _pareto_axis(ax, pts, xlabel, f"Sweep (Optuna study): energy vs {accuracy.split(' ')[0]}", scale=k,
                 ylabel=accuracy)
    footnote(fig, label, f"Pareto front (study.best_trials): no other trial has lower energy and higher "
                         f"{accuracy.split(' ')[0]}")
    fig.tight_layout()
    return fig
