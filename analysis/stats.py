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

Scipy is not a dependency, so the t quantile is computed here from the regularised incomplete
beta function (continued fraction, as in Numerical Recipes) and bisection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

CONFIDENCE = 0.95


# --------------------------------------------------------------------------- t distribution


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    bt = math.exp(lbt)
    if x < (a + 1.0) / (a + b + 2.0):
        return bt * _betacf(a, b, x) / a
    return 1.0 - bt * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: df must be > 0, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (e.g. ``t_quantile(0.975, 2) ≈ 4.303``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # df ≥ 1 needs hi ≈ 64 for p = 0.995; grow until bracketed
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def t_crit(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t for the given confidence level."""
    return t_quantile(0.5 + confidence / 2.0, df)


# --------------------------------------------------------------------------- means and CIs


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` observations with its two-sided 95 % CI (``None`` when ``n < 2``)."""

    mean: float | None
    n: int
    std: float | None = None
    ci95: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return d

    @property
    def half_width(self) -> float | None:
        return None if self.ci95 is None else (self.ci95[1] - self.ci95[0]) / 2.0


def _clean(values: Iterable[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def mean_ci95(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample standard deviation and t-based CI of the finite values (None/NaN dropped).

    ``n = 0`` → mean ``None``; ``n = 1`` → CI ``None`` (one observation has no spread).
    """
    xs = _clean(values)
    n = len(xs)
    if n == 0:
        return Summary(mean=None, n=0)
    m = math.fsum(xs) / n
    if n == 1:
        return Summary(mean=m, n=1)
    sd = math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))
    h = t_crit(n - 1, confidence) * sd / math.sqrt(n)
    return Summary(mean=m, n=n, std=sd, ci95=(m - h, m + h))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) with linear interpolation between order statistics
    (numpy's default "linear" method). ``None`` for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    xs = sorted(_clean(values))
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 95, 99)) -> dict[str, float | None]:
    """``{"p50": …, "p90": …}`` for the given percentiles."""
    return {f"p{q:g}": percentile(values, q) for q in qs}


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
