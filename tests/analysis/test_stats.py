"""Known-answer tests for analysis.stats (t quantiles, CIs, percentiles, savings)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import stats


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (1000, 1.9623)],
)
def test_t_crit_matches_tables(df, expected):
    assert stats.t_crit(df) == pytest.approx(expected, abs=5e-4)


def test_t_cdf_symmetry_and_centre():
    assert stats.t_cdf(0.0, 5) == pytest.approx(0.5)
    assert stats.t_cdf(-2.0, 5) == pytest.approx(1.0 - stats.t_cdf(2.0, 5))
    assert stats.t_quantile(0.025, 3) == pytest.approx(-stats.t_quantile(0.975, 3))


def test_mean_ci95_known_answer():
    s = stats.mean_ci95([1.0, 2.0, 3.0])
    assert s.mean == pytest.approx(2.0)
    assert s.std == pytest.approx(1.0)
    half = 4.302653 / math.sqrt(3)
    assert s.ci95 == pytest.approx((2.0 - half, 2.0 + half), abs=1e-5)
    assert s.n == 3


def test_mean_ci95_single_and_empty_and_nan():
    one = stats.mean_ci95([5.0])
    assert one.mean == 5.0 and one.n == 1 and one.ci95 is None and one.std is None
    none = stats.mean_ci95([])
    assert none.mean is None and none.n == 0
    # None and NaN are dropped, not averaged as zero
    s = stats.mean_ci95([1.0, None, float("nan"), 3.0])
    assert s.n == 2 and s.mean == 2.0


def test_percentile_matches_numpy_linear():
    xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    for q in (0, 25, 50, 90, 95, 99, 100):
        assert stats.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert stats.percentile([], 50) is None
    assert stats.percentiles([1, 2, 3, 4])["p50"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="q must be"):
        stats.percentile(xs, 101)


def test_saving_and_multiplicative_prediction():
    assert stats.saving(80.0, 100.0) == pytest.approx(0.2)
    assert stats.multiplicative_prediction([0.2, 0.3]) == pytest.approx(0.44)
    assert stats.multiplicative_prediction([]) == 0.0
    with pytest.raises(ValueError, match="baseline"):
        stats.saving(1.0, 0.0)


def test_saving_ci_contains_value_and_tightens_with_precision():
    s = stats.saving_ci([80, 81, 79], [100, 101, 99])
    assert s.value == pytest.approx(0.2, abs=1e-9)
    lo, hi = s.ci95
    assert lo < 0.2 < hi
    tight = stats.saving_ci([80, 80.1, 79.9], [100, 100.1, 99.9])
    assert (tight.ci95[1] - tight.ci95[0]) < (hi - lo)
    # one run on either side → value but no CI
    s1 = stats.saving_ci([80], [100, 101, 99])
    assert s1.value == pytest.approx(0.2) and s1.ci95 is None
    assert stats.saving_ci([], [100]) is None


def test_combine_log_terms_zero_variance_gives_point_interval():
    t1 = stats.log_term([2.0, 2.0], 1.0)
    t2 = stats.log_term([4.0, 4.0], -1.0)
    r, ci, _ = stats.combine_log_terms([t1, t2])
    assert r == pytest.approx(0.5) and ci == pytest.approx((0.5, 0.5))
