"""Pure statistics used by every analysis: means with t-based 95 % CIs, percentiles, savings.

Everything here is a plain function of plain numbers (no files, no pandas), so it can be tested
on hand-made inputs with known answers.

Confidence intervals
--------------------
* A mean's 95 % CI uses Student's t with ``n − 1`` degrees of freedom. One observation gives no
  spread, so its CI is ``None`` (never a fake zero-width interval).
* A *saving* ``s = 1 − E_variant / E_baseline`` is a ratio of two independently measured means.
  Its CI comes from the **delta method on the log scale**: ``ln(E_v/E_b)`` has variance
  ``≈ cv_v²/n_v + cv_b²/n_b`` (``cv`` = standard deviation / mean), degrees of freedom from
  Welch–Satterthwaite, and the interval is mapped back through ``s = 1 − exp(·)``. Working on
  the log scale keeps the ratio positive and makes products of ratios (the stacking prediction)
  sums of independent terms. With 3–5 repeats a bootstrap has only a handful of distinct
  resamples, which is why it is not used.

The t distribution, means with CIs and percentiles come from :mod:`study.stats`, shared with
training and the load tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The t distribution, means with CIs and percentiles are shared with training and loadtest.
from study.stats import (  # noqa: F401  (re-exported: analysis.stats is this package's API)
    CONFIDENCE,
    Summary,
    betainc,
    mean_ci95,
    percentile,
    percentiles,
    t_cdf,
    t_crit,
    t_quantile,
)

# --------------------------------------------------------------------------- log-ratio terms


@dataclass(frozen=True)
class LogTerm:
    """``coef × ln(mean)`` of one measured quantity, with the variance of ``ln(mean)``.

    The building block of every ratio below: a saving is ``ln E_v − ln E_b``; the stacking
    prediction is ``Σ ln E_i − k ln E_0``.
    """

    mean: float
    var_log: float | None  # Var(ln mean) ≈ cv² / n; None when n < 2
    n: int
    coef: float = 1.0


def log_term(values: Iterable[float | None], coef: float = 1.0) -> LogTerm | None:
    """A :class:`LogTerm` from repeat observations (``None`` when the mean is not positive)."""
    s = mean_ci95(values)
    if s.mean is None or s.mean <= 0:
        return None
    var = None if s.std is None else (s.std / s.mean) ** 2 / s.n
    return LogTerm(mean=s.mean, var_log=var, n=s.n, coef=coef)


def combine_log_terms(
    terms: Sequence[LogTerm], confidence: float = CONFIDENCE
) -> tuple[float, tuple[float, float] | None, float | None]:
    """``exp(Σ coef·ln mean)`` with its delta-method CI.

    Returns ``(ratio, ci95 or None, df or None)``. The CI is ``None`` if any term has fewer than
    two observations. Degrees of freedom: Welch–Satterthwaite over the terms.
    """
    log_r = math.fsum(t.coef * math.log(t.mean) for t in terms)
    ratio = math.exp(log_r)
    if any(t.var_log is None for t in terms):
        return ratio, None, None
    parts = [(t.coef**2) * t.var_log for t in terms]  # type: ignore[operator]
    var = math.fsum(parts)
    if var <= 0:
        return ratio, (ratio, ratio), float("inf")
    denom = math.fsum(p * p / (t.n - 1) for p, t in zip(parts, terms, strict=True))
    df = var * var / denom if denom > 0 else float("inf")
    tc = t_crit(df, confidence) if math.isfinite(df) else 1.959963984540054
    h = tc * math.sqrt(var)
    return ratio, (math.exp(log_r - h), math.exp(log_r + h)), df


# --------------------------------------------------------------------------- savings


def saving(e_variant: float, e_baseline: float) -> float:
    """Relative saving ``s = 1 − E_variant / E_baseline`` (0.2 = 20 % less energy)."""
    if e_baseline is None or e_baseline <= 0:
        raise ValueError(f"saving: baseline energy must be > 0, got {e_baseline}")
    return 1.0 - e_variant / e_baseline


@dataclass(frozen=True)
class Saving:
    """A saving with its CI (``None`` when either side has n < 2)."""

    value: float
    ci95: tuple[float, float] | None
    n_variant: int
    n_baseline: int

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "ci95": list(self.ci95) if self.ci95 else None,
            "n_variant": self.n_variant,
            "n_baseline": self.n_baseline,
        }


def saving_ci(
    variant_values: Iterable[float | None],
    baseline_values: Iterable[float | None],
    confidence: float = CONFIDENCE,
) -> Saving | None:
    """Saving of the variant's mean against the baseline's mean, with a log-ratio delta CI.

    ``None`` when either side has no positive mean.
    """
    tv = log_term(variant_values, 1.0)
    tb = log_term(baseline_values, -1.0)
    if tv is None or tb is None:
        return None
    ratio, ci, _ = combine_log_terms([tv, tb], confidence)
    # s = 1 − ratio is decreasing in ratio, so the bounds swap.
    s_ci = None if ci is None else (1.0 - ci[1], 1.0 - ci[0])
    return Saving(value=1.0 - ratio, ci95=s_ci, n_variant=tv.n, n_baseline=tb.n)


def multiplicative_prediction(savings: Sequence[float]) -> float:
    """The seed's stacking prediction ``S = 1 − ∏(1 − s_i)`` (0.2 and 0.3 → 0.44)."""
    prod = 1.0
    for s in savings:
        prod *= 1.0 - s
    return 1.0 - prod
