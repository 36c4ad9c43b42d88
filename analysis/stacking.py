"""Do savings stack? Measured saving of a combination vs the seed's multiplicative prediction.

For a combination ``v2+v7+v8`` with single-technique savings ``s_i = 1 − E_i / E_0`` the seed's
prediction is ``S = 1 − ∏(1 − s_i)``: each technique removes its share of what the others left.
The measured saving is ``s_m = 1 − E_m / E_0``.

The verdict compares the two through the **interaction ratio**

    ρ = (1 − s_m) / (1 − S) = E_m · E_0^(k−1) / ∏ E_i

(measured remaining energy ÷ predicted remaining energy). All energies are means over repeats;
because predicted and measured share the baseline ``E_0``, comparing their two CIs directly
would double-count its noise, whereas ``ln ρ`` is a sum of independent log-means whose
variance is the delta-method sum ``cv_m²/n_m + Σ cv_i²/n_i + (k−1)² cv_0²/n_0`` (see
:mod:`analysis.stats`). From its 95 % CI:

* CI inside ``[1 − margin, 1 + margin]`` → **multiplicative**: consistent with the
  multiplicative prediction, within ``margin`` (default 5 % of the predicted remaining
  energy) — tested first, so a tight CI just above 1 is not called cancelling;
* else CI entirely below 1 → **compounding**: the combination saves more than predicted;
* else CI entirely above 1 → **cancelling**: it saves less than predicted (techniques get in
  each other's way);
* otherwise → **inconclusive (CIs overlap)**; a zero-width CI (identical repeats: no spread to
  estimate) or any side with fewer than two repeats → **inconclusive (n too small)**.

Inputs must be comparable: a combination whose baseline, components and itself were measured
by different meters or energy kinds, or trained on different base models or data, gets
``not comparable (<field>)`` instead of a verdict.

The naive sum ``Σ s_i`` is reported for reference only (it overstates stacking and can exceed 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from analysis.stats import combine_log_terms, log_term, multiplicative_prediction, saving_ci

DEFAULT_MARGIN = 0.05

VERDICTS = (
    "multiplicative",
    "compounding",
    "cancelling",
    "inconclusive (n too small)",
    "inconclusive (CIs overlap)",
    "inconclusive (zero-width CI)",
    "not comparable",
    "n/a",
)
# Fields that must agree across every run a stacking row compares (first that differs is named).
COMPARABLE_FIELDS = ("energy_source", "energy_kind", "model_name", "data")


def components(combination: str) -> list[str]:
    """``"v2+v7+v8"`` → ``["v2", "v7", "v8"]``."""
    return [p.strip() for p in combination.split("+") if p.strip()]


def is_combination(name: str) -> bool:
    """True for names with at least two ``+``-joined parts."""
    return len(components(name)) >= 2


def verdict_from_ratio_ci(ci: tuple[float, float] | None, margin: float = DEFAULT_MARGIN) -> str:
    """Classify an interaction-ratio CI (see module docstring)."""
    if ci is None:
        return "inconclusive (n too small)"
    lo, hi = ci
    if not hi > lo:
        return "inconclusive (zero-width CI)"
    if lo >= 1.0 - margin and hi <= 1.0 + margin:
        return "multiplicative"
    if hi < 1.0:
        return "compounding"
    if lo > 1.0:
        return "cancelling"
    return "inconclusive (CIs overlap)"


def not_comparable(runs, variants: Sequence[str]) -> str | None:
    """``"not comparable (<field>)"`` when the runs of ``variants`` differ in a
    :data:`COMPARABLE_FIELDS` column, else ``None``."""
    if runs is None or runs.empty:
        return None
    sub = runs[runs["variant"].isin(list(variants))]
    for f in COMPARABLE_FIELDS:
        if f in sub.columns and sub[f].fillna("").astype(str).nunique() > 1:
            return f"not comparable ({f})"
    return None


def stack_one(
    observations: Mapping[str, Sequence[float]],
    combination: str,
    baseline: str = "v0",
    margin: float = DEFAULT_MARGIN,
) -> dict[str, Any]:
    """Stacking analysis of one combination from per-variant repeat observations of an energy.

    ``observations`` maps a variant name to its repeat values (e.g. training kWh). Returns a row
    with the component savings, predicted ``S`` and measured ``s_m`` (each with CI or ``None``),
    the interaction ratio with CI, the verdict and a human-readable reason.
    """
    comps = components(combination)
    row: dict[str, Any] = {
        "combination": combination,
        "components": comps,
        "baseline": baseline,
        "component_savings": {},
        "naive_sum": None,
        "predicted": None,
        "predicted_ci95": None,
        "measured": None,
        "measured_ci95": None,
        "interaction_ratio": None,
        "interaction_ci95": None,
        "n": {},
        "verdict": "n/a",
        "reason": "",
    }
    needed = [baseline, *comps, combination]
    missing = [v for v in needed if not [x for x in observations.get(v, []) if x is not None]]
    if missing:
        row["reason"] = "missing measurements for " + ", ".join(missing)
        return row
    t0 = log_term(observations[baseline], coef=float(len(comps) - 1))
    tm = log_term(observations[combination], coef=1.0)
    tis = [log_term(observations[c], coef=-1.0) for c in comps]
    if t0 is None or tm is None or any(t is None for t in tis):
        row["reason"] = "an energy mean is not positive"
        return row
    row["n"] = {v: log_term(observations[v]).n for v in dict.fromkeys(needed)}  # type: ignore[union-attr]

    singles = {}
    for c in comps:
        s = saving_ci(observations[c], observations[baseline])
        singles[c] = s.to_dict() if s else None
    row["component_savings"] = singles
    s_vals = [singles[c]["value"] for c in comps]
    row["naive_sum"] = math.fsum(s_vals)
    row["predicted"] = multiplicative_prediction(s_vals)

    # Predicted remaining energy fraction ∏(E_i/E_0) = exp(Σ ln E_i − k ln E_0).
    pred_terms = [log_term(observations[c], 1.0) for c in comps] + [
        log_term(observations[baseline], -float(len(comps)))
    ]
    _, pred_ci, _ = combine_log_terms(pred_terms)  # type: ignore[arg-type]
    row["predicted_ci95"] = None if pred_ci is None else [1.0 - pred_ci[1], 1.0 - pred_ci[0]]

    meas = saving_ci(observations[combination], observations[baseline])
    row["measured"] = meas.value if meas else None
    row["measured_ci95"] = list(meas.ci95) if meas and meas.ci95 else None

    # ρ = E_m · E_0^(k−1) / ∏ E_i
    ratio, ci, _ = combine_log_terms([tm, t0, *tis])  # type: ignore[list-item]
    row["interaction_ratio"] = ratio
    row["interaction_ci95"] = list(ci) if ci else None
    row["verdict"] = verdict_from_ratio_ci(ci, margin)
    small = [v for v, n in row["n"].items() if n < 2]
    if small:
        row["reason"] = f"fewer than 2 repeats for {', '.join(small)}: no CI, no verdict"
    elif row["verdict"] == "inconclusive (zero-width CI)":
        row["reason"] = "every repeat gave the same value: no spread to build an interval from"
    elif row["verdict"] == "multiplicative":
        row["reason"] = f"measured/predicted remaining energy CI within ±{margin:.0%} of 1"
    elif row["verdict"] == "compounding":
        row["reason"] = "combination saves more than the multiplicative prediction (ρ CI < 1)"
    elif row["verdict"] == "cancelling":
        row["reason"] = "combination saves less than the multiplicative prediction (ρ CI > 1)"
    else:
        row["reason"] = f"ρ CI [{ci[0]:.3f}, {ci[1]:.3f}] includes 1 but is wider than ±{margin:.0%}"  # type: ignore[index]
    return row


def stack_all(
    observations: Mapping[str, Sequence[float]],
    baseline: str = "v0",
    margin: float = DEFAULT_MARGIN,
    scope: str = "",
    metric: str = "",
    runs=None,
) -> list[dict[str, Any]]:
    """:func:`stack_one` for every combination variant present in ``observations``; with
    ``runs`` (the rows behind them) each is checked with :func:`not_comparable` first."""
    rows = []
    for name in sorted(observations):
        if is_combination(name):
            r = stack_one(observations, name, baseline=baseline, margin=margin)
            r["scope"] = scope
            r["metric"] = metric
            why = not_comparable(runs, [baseline, *r["components"], name])
            if why:
                r["verdict"], r["reason"] = "not comparable", why.replace("not comparable", "the runs differ in")
            rows.append(r)
    return rows


def training_stacking(
    train_runs, metric: str = "energy_kwh.training", baseline: str = "v0", margin: float = DEFAULT_MARGIN
) -> list[dict[str, Any]]:
    """Stacking rows for training energy from the aggregate's ``train_runs`` table."""
    if train_runs is None or train_runs.empty or metric not in train_runs.columns:
        return []
    used = train_runs[train_runs["used"]]
    obs = {str(v): sub[metric].dropna().tolist() for v, sub in used.groupby("variant")}
    return stack_all(obs, baseline, margin, scope="training", metric=metric, runs=used)


def serving_stacking(
    load_runs, metric: str = "energy_per_1k_wh.server", baseline: str = "v0", margin: float = DEFAULT_MARGIN
) -> list[dict[str, Any]]:
    """Stacking rows for serving energy, one scope per engine × format × load setting × meter
    (the combination and its components must all be served and measured the same way)."""
    if load_runs is None or load_runs.empty or metric not in load_runs.columns:
        return []
    used = load_runs[load_runs["used"]]
    rows: list[dict[str, Any]] = []
    keys = [c for c in ("engine", "format", "load", "meter") if c in used.columns]
    for key, sub in used.groupby(keys, dropna=False):
        engine, fmt, load = key[:3]
        obs = {str(v): s[metric].dropna().tolist() for v, s in sub.groupby("variant")}
        rows += stack_all(obs, baseline, margin, scope=f"{engine} / {fmt or '-'} / {load}", metric=metric,
                          runs=sub)
    return rows
