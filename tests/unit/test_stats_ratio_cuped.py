"""Ratio metrics (delta method) and CUPED: agreement with independent computations on
unit-level data (numpy covariances, statsmodels OLS and Welch), nominal A/A error and
coverage, CUPED's variance reduction close to rho², and degenerate cells explained."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import statsmodels.api as sm
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analytics.stats import cuped_test, ratio_test
from analytics.stats.arms import CupedArms, MeanArms, RatioArms

RTOL = 1e-8
Array = npt.NDArray[np.float64]


def _mean(x: Array) -> MeanArms:
    """Units, Σx and Σx² over the last axis."""
    return MeanArms(np.full(x.shape[:-1], float(x.shape[-1])), x.sum(-1), (x * x).sum(-1))


def _ratio_sums(x: Array, y: Array) -> RatioArms:
    """Σx / Σy over the last axis."""
    return RatioArms(numerator=_mean(x), denominator=_mean(y), cross=(x * y).sum(-1))


def _sessions_and_revenue(
    rng: np.random.Generator, shape: tuple[int, ...], spend: float = 4.0
) -> tuple[Array, Array]:
    sessions = 1.0 + rng.poisson(2.0, shape)
    revenue = rng.gamma(sessions * 0.5, spend)  # correlated with the unit's sessions
    return revenue, sessions


def test_ratio_variance_matches_the_delta_method_on_unit_level_data() -> None:
    rng = np.random.default_rng(8)
    (x_c, y_c), (x_t, y_t) = (
        _sessions_and_revenue(rng, (900,)),
        _sessions_and_revenue(rng, (1100,), spend=4.4),
    )

    cell = ratio_test(_ratio_sums(x_c, y_c), _ratio_sums(x_t, y_t)).cell(0)

    def ratio_variance(x: Array, y: Array) -> float:
        # Deng et al. (2018) eq. for Var(mean x / mean y), from the sample covariance.
        covariance = np.cov(x, y)
        mu_x, mu_y = x.mean(), y.mean()
        gradient = np.array([1 / mu_y, -mu_x / mu_y**2])
        return float(gradient @ covariance @ gradient / len(x))

    expected_se = np.sqrt(ratio_variance(x_c, y_c) + ratio_variance(x_t, y_t))
    expected_difference = x_t.sum() / y_t.sum() - x_c.sum() / y_c.sum()
    assert cell.test == "ratio_delta" and cell.reason is None
    assert cell.difference == pytest.approx(expected_difference, rel=RTOL)
    assert cell.standard_error == pytest.approx(expected_se, rel=RTOL)
    assert cell.control_mean == pytest.approx(x_c.sum() / y_c.sum(), rel=RTOL)


def test_ratio_a_a_false_positive_rate_and_coverage_are_nominal() -> None:
    rng = np.random.default_rng(2018)
    experiments, n = 10_000, 400
    control = _ratio_sums(*_sessions_and_revenue(rng, (experiments, n)))
    treatment_x, treatment_y = _sessions_and_revenue(rng, (experiments, n), spend=4.4)
    treatment_same = _ratio_sums(*_sessions_and_revenue(rng, (experiments, n)))

    aa = ratio_test(control, treatment_same)
    shifted = ratio_test(control, _ratio_sums(treatment_x, treatment_y))

    # sd of a 5% rate over 10,000 experiments is 0.22%: [4%, 6%] is 4.5 sd each side.
    assert 0.04 <= aa.significant.mean() <= 0.06
    true_difference = 0.4 * 0.5  # E[revenue]/E[sessions] = 0.5 · spend
    covered = (shifted.difference_ci_low <= true_difference) & (
        shifted.difference_ci_high >= true_difference
    )
    assert 0.94 <= covered.mean() <= 0.96


def _ratio(n: float, x: float, y: float, xx: float, yy: float, xy: float) -> RatioArms:
    return RatioArms(MeanArms(n, x, xx), MeanArms(n, y, yy), xy)


def test_ratio_degenerate_cells_are_explained() -> None:
    good = _ratio(n=100.0, x=50.0, y=200.0, xx=40.0, yy=500.0, xy=110.0)
    constant = _ratio(n=50.0, x=50.0, y=100.0, xx=50.0, yy=200.0, xy=100.0)
    cells = [
        (_ratio(n=0, x=0, y=0, xx=0, yy=0, xy=0), good, "control arm has no units yet"),
        (
            _ratio(n=100.0, x=5.0, y=0.0, xx=1.0, yy=0.0, xy=0.0),
            good,
            "control denominator Σy is 0",
        ),
        (_ratio(n=100.0, x=50.0, y=200.0, xx=1.0, yy=500.0, xy=110.0), good, "inconsistent sums"),
        (constant, constant, "no variance"),
        (good, good, None),
    ]

    def stacked(arms: list[RatioArms]) -> RatioArms:
        def mean(side: list[MeanArms]) -> MeanArms:
            return MeanArms(*(np.array(column) for column in zip(*side, strict=True)))

        return RatioArms(
            mean([arm.numerator for arm in arms]),
            mean([arm.denominator for arm in arms]),
            np.array([arm.cross for arm in arms]),
        )

    control = stacked([c for c, _, _ in cells])
    treatment = stacked([t for _, t, _ in cells])

    result = ratio_test(control, treatment)

    for index, (_, _, expected) in enumerate(cells):
        cell = result.cell(index)
        if expected is None:
            assert cell.reason is None and cell.p_value is not None
        else:
            assert cell.reason is not None and expected in cell.reason and cell.p_value is None
    assert np.isfinite(np.ma.getdata(result.p_value)).all()


def _cuped_data(
    rng: np.random.Generator, n: int, rho: float, effect: float = 0.0
) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    """(y, x) per arm: y correlates with the pre-period covariate x at ``rho``."""

    def arm(shift: float) -> tuple[Array, Array]:
        x = rng.normal(10.0, 2.0, n)
        y = 10.0 + shift + rho * (x - 10.0) + np.sqrt(1 - rho**2) * rng.normal(0.0, 2.0, n)
        return y, x

    return arm(0.0), arm(effect)


def _cuped_sums(y: Array, x: Array) -> CupedArms:
    """The metric y after exposure, its covariate x before."""
    return CupedArms(post=_mean(y), pre=_mean(x), cross=(x * y).sum(-1))


def test_cuped_effect_is_the_ancova_coefficient_and_its_test_is_welch_on_adjusted_values() -> None:
    rng = np.random.default_rng(13)
    (y_c, x_c), (y_t, x_t) = _cuped_data(rng, 3000, rho=0.7, effect=0.15)

    result = cuped_test(_cuped_sums(y_c, x_c), _cuped_sums(y_t, x_t))
    cell = result.comparison.cell(0)

    treated = np.r_[np.zeros(len(y_c)), np.ones(len(y_t))]
    design = sm.add_constant(np.column_stack([treated, np.r_[x_c, x_t]]))
    ols = sm.OLS(np.r_[y_c, y_t], design).fit()
    assert cell.difference == pytest.approx(ols.params[1], rel=RTOL)
    assert float(result.theta[0]) == pytest.approx(ols.params[2], rel=RTOL)

    x_bar = np.r_[x_c, x_t].mean()
    theta = ols.params[2]
    compare = CompareMeans(
        DescrStatsW(y_t - theta * (x_t - x_bar)), DescrStatsW(y_c - theta * (x_c - x_bar))
    )
    _, p_value, _ = compare.ttest_ind(usevar="unequal")
    assert cell.p_value == pytest.approx(p_value, rel=RTOL)
    assert cell.difference_ci == pytest.approx(compare.tconfint_diff(usevar="unequal"), rel=RTOL)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_cuped_variance_reduction_is_within_0_03_of_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(int(rho * 100))
    (y_c, x_c), (y_t, x_t) = _cuped_data(rng, 20_000, rho=rho)
    result = cuped_test(_cuped_sums(y_c, x_c), _cuped_sums(y_t, x_t))
    assert float(result.variance_reduction[0]) == pytest.approx(rho**2, abs=0.03)


def test_cuped_a_a_false_positive_rate_is_nominal() -> None:
    rng = np.random.default_rng(2013)
    experiments, n, rho = 10_000, 200, 0.8
    x = rng.normal(10.0, 2.0, (2, experiments, n))
    y = 10.0 + rho * (x - 10.0) + np.sqrt(1 - rho**2) * rng.normal(0.0, 2.0, (2, experiments, n))

    def sums(arm: int) -> CupedArms:
        return _cuped_sums(y[arm], x[arm])

    result = cuped_test(sums(0), sums(1))
    assert 0.04 <= result.comparison.significant.mean() <= 0.06
    assert float(np.ma.median(result.variance_reduction)) == pytest.approx(rho**2, abs=0.03)


def test_cuped_without_a_usable_covariate_is_the_plain_welch_test() -> None:
    rng = np.random.default_rng(5)
    y_c, y_t = rng.normal(0, 1, 50), rng.normal(0.2, 1, 60)
    constant, constant_t = _cuped_sums(y_c, np.full(50, 3.0)), _cuped_sums(y_t, np.full(60, 3.0))
    result = cuped_test(constant, constant_t)
    assert float(result.theta[0]) == 0.0
    assert float(result.variance_reduction[0]) == pytest.approx(0.0, abs=1e-12)
    nothing = MeanArms(0, 0, 0)
    empty = cuped_test(CupedArms(nothing, nothing, 0), constant_t).comparison.cell(0)
    assert empty.reason == "control arm has no units yet" and empty.p_value is None
