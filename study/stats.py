"""Statistics shared by every stage that reports repeated measurements: Student's t, means
with 95 % confidence intervals, percentiles, and dotted-path access into result dicts.

Training results (:mod:`training.results`), load-test summaries (:mod:`loadtest.summary`) and
the analysis (:mod:`analysis.stats`) all use these, so a CI means the same thing everywhere.
It lives in ``energy`` because that is the one package every stage already imports.

* A mean's 95 % CI uses Student's t with ``n − 1`` degrees of freedom. One observation gives no
  spread, so its CI is ``None`` (never a fake zero-width interval).
* Scipy is not a dependency, so the t quantile is computed from the regularised incomplete beta
  function (continued fraction, as in Numerical Recipes) and bisection.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

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
        raise ValueError(f"percentile: q must be in [0, 100], got {q}; allowed: 0..100")
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


# --------------------------------------------------------------------------- dotted paths


def get_path(d: Any, dotted: str, default: Any = None) -> Any:
    """``get_path(s, "latency_ms.p99")`` → ``s["latency_ms"]["p99"]`` (``default`` if absent)."""
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def set_path(d: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_path(s, "a.b", 1)`` → ``s["a"]["b"] = 1``, creating the dicts on the way."""
    parts = dotted.split(".")
    cur = d
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
