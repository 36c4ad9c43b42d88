"""The report's options and the analyses behind its sections (stacking, trade-offs, the SLO
choice, the lifecycle projection), computed from an aggregate without plotting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis import lifecycle as lc
from analysis import stacking, tradeoffs
from analysis.aggregate import Aggregate


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
