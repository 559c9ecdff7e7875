"""Wilson and Newcombe score intervals agree with statsmodels and with the published
worked examples of Newcombe (1998); small-count conversion comparisons switch to them."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from analytics.stats import newcombe_interval, two_proportion_z_test, wilson_interval

RTOL = 1e-8


def test_wilson_matches_statsmodels_in_one_vectorised_call() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(1, 5000, 200)
    x = rng.binomial(n, rng.random(200))
    x[:3], n[:3] = [0, 7, 12], [12, 7, 12]  # 0 and n successes included

    result = wilson_interval(n, x, alpha=0.1)

    low, high = proportion_confint(x, n, alpha=0.1, method="wilson")
    np.testing.assert_allclose(result.low, low, rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(result.high, high, rtol=RTOL, atol=1e-15)
    assert result.reason.tolist() == [None] * 200


def test_newcombe_matches_statsmodels_in_one_vectorised_call() -> None:
    rng = np.random.default_rng(2)
    n_c, n_t = rng.integers(1, 300, 100), rng.integers(1, 300, 100)
    x_c, x_t = rng.binomial(n_c, 0.05), rng.binomial(n_t, 0.08)

    result = newcombe_interval(n_c, x_c, n_t, x_t)

    for i in range(100):
        low, high = confint_proportions_2indep(
            x_t[i], n_t[i], x_c[i], n_c[i], method="newcomb", compare="diff"
        )
        assert (result.low[i], result.high[i]) == pytest.approx((low, high), rel=RTOL, abs=1e-15)


def test_wilson_reproduces_newcombe_1998_single_proportion_example() -> None:
    # Newcombe RG (1998) "Two-sided confidence intervals for the single proportion:
    # comparison of seven methods", Statistics in Medicine 17:857-872, Table I:
    # 81/263 -> score (Wilson) method 95% CI 0.2553 to 0.3662.
    result = wilson_interval(263, 81)
    assert float(result.low[0]) == pytest.approx(0.2553, abs=5e-5)
    assert float(result.high[0]) == pytest.approx(0.3662, abs=5e-5)


@pytest.mark.parametrize(
    ("treatment", "control", "expected"),
    [
        ((56, 70), (48, 80), (0.0524, 0.3339)),
        ((9, 10), (3, 10), (0.1705, 0.8090)),
        ((5, 56), (0, 29), (-0.0381, 0.1926)),
        ((0, 10), (0, 20), (-0.1611, 0.2775)),
        ((0, 10), (0, 10), (-0.2775, 0.2775)),
    ],
)
def test_newcombe_reproduces_newcombe_1998_difference_examples(
    treatment: tuple[int, int], control: tuple[int, int], expected: tuple[float, float]
) -> None:
    # Newcombe RG (1998) "Interval estimation for the difference between independent
    # proportions: comparison of eleven methods", Statistics in Medicine 17:873-890,
    # Table II, method 10 (score interval, no continuity correction), examples (a), (b),
    # (d), (e), (f).
    (x_t, n_t), (x_c, n_c) = treatment, control
    result = newcombe_interval(n_c, x_c, n_t, x_t)
    assert (float(result.low[0]), float(result.high[0])) == pytest.approx(expected, abs=5e-5)


def test_intervals_explain_cells_without_units_and_never_nan() -> None:
    single = wilson_interval([0, 10, 5], [0, 3, 7])
    assert single.reason.tolist() == [
        "the arm has no units yet",
        None,
        "the conversions must be between 0 and its units",
    ]
    difference = newcombe_interval([0, 10], [0, 1], [10, 10], [2, 2])
    assert difference.reason.tolist() == ["control arm has no units yet", None]
    for array in (single.low, single.high, difference.low, difference.estimate):
        assert np.isfinite(np.ma.getdata(array)).all()


def test_small_counts_get_a_newcombe_interval_that_covers_where_wald_does_not() -> None:
    # 50 units per arm converting at 2% and 10%: the Wald interval undercovers.
    rng = np.random.default_rng(4)
    experiments, n, rate_c, rate_t = 4000, 50, 0.02, 0.10
    x_c, x_t = rng.binomial(n, rate_c, experiments), rng.binomial(n, rate_t, experiments)

    def coverage(small_count: float) -> float:
        result = two_proportion_z_test(n, x_c, n, x_t, small_count=small_count)
        computed = result.reason == None  # noqa: E711
        if small_count > 0:
            assert set(result.interval_method[computed]) == {"newcombe"}
        covers = (result.difference_ci_low <= 0.08) & (result.difference_ci_high >= 0.08)
        return float(np.mean(np.ma.getdata(covers)[computed]))

    assert coverage(small_count=0) < 0.935  # Wald everywhere: well below the nominal 95%
    assert coverage(small_count=10) >= 0.95
