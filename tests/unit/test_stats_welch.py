"""Welch's t test from sufficient statistics agrees with statsmodels and scipy on the
unit-level data, covers at its nominal rate, and answers degenerate cells with a reason."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analytics.stats import welch_t_test

RTOL = 1e-8  # relative agreement with statsmodels / scipy on the same unit-level data


def _sufficient(values: npt.NDArray[np.float64]) -> tuple[int, float, float]:
    return len(values), float(values.sum()), float((values * values).sum())


def _cases() -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    rng = np.random.default_rng(20240611)
    return [
        (rng.normal(10, 2, 500), rng.normal(10.3, 3, 700)),
        (rng.normal(100, 1, 50), rng.normal(99.5, 8, 3000)),
        (rng.lognormal(1, 1.2, 2000), rng.lognormal(1.05, 1.2, 1900)),  # skewed revenue
        (rng.poisson(0.7, 1500).astype(float), rng.poisson(0.8, 1500).astype(float)),  # counts
        (rng.normal(0, 1, 3), rng.normal(1, 2, 4)),  # tiny arms
        (np.full(40, 5.0), rng.normal(5.5, 1, 40)),  # one arm without variance
    ]


# scipy warns about the arm whose values are all equal; its answer is still exact.
@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_matches_statsmodels_and_scipy_in_one_vectorised_call() -> None:
    cases = _cases()
    control = np.array([_sufficient(c) for c, _ in cases])
    treatment = np.array([_sufficient(t) for _, t in cases])

    result = welch_t_test(*control.T, *treatment.T)

    for index, (c, t) in enumerate(cases):
        compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))  # treatment - control
        t_stat, p_value, _ = compare.ttest_ind(usevar="unequal")
        ci_low, ci_high = compare.tconfint_diff(usevar="unequal")
        cell = result.cell(index)
        # A control mean at or below 0 leaves only the relative effect undefined.
        relative_defined = c.mean() > 0
        assert cell.reason_code == (None if relative_defined else "control_mean_not_positive")
        assert cell.statistic == pytest.approx(t_stat, rel=RTOL)
        assert cell.p_value == pytest.approx(p_value, rel=RTOL)
        assert cell.difference_ci == pytest.approx((ci_low, ci_high), rel=RTOL)
        assert cell.difference == pytest.approx(t.mean() - c.mean(), rel=RTOL)
        assert cell.control_mean == pytest.approx(c.mean(), rel=RTOL)
        scipy_result = scipy_stats.ttest_ind(t, c, equal_var=False)
        assert cell.statistic == pytest.approx(scipy_result.statistic, rel=RTOL)
        assert cell.p_value == pytest.approx(scipy_result.pvalue, rel=RTOL)
        if relative_defined:
            assert cell.relative == pytest.approx(t.mean() / c.mean() - 1, rel=RTOL)
        else:
            assert cell.relative is None and cell.relative_ci is None


def test_narrower_confidence_when_alpha_is_larger() -> None:
    c, t = _cases()[0]
    wide = welch_t_test(*_sufficient(c), *_sufficient(t), alpha=0.01).cell(0)
    narrow = welch_t_test(*_sufficient(c), *_sufficient(t), alpha=0.10).cell(0)
    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    assert narrow.difference_ci == pytest.approx(
        compare.tconfint_diff(alpha=0.10, usevar="unequal"), rel=RTOL
    )
    assert wide.difference_ci is not None and narrow.difference_ci is not None
    assert wide.difference_ci[0] < narrow.difference_ci[0] < narrow.difference_ci[1]
    assert narrow.difference_ci[1] < wide.difference_ci[1]


def test_intervals_cover_the_true_effects_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    experiments, n = 2000, 300
    control = rng.normal(10.0, 3.0, (experiments, n))
    treatment = rng.normal(10.5, 4.0, (experiments, n))
    result = welch_t_test(
        n, control.sum(1), (control**2).sum(1), n, treatment.sum(1), (treatment**2).sum(1)
    )

    absolute = (result.difference_ci_low <= 0.5) & (result.difference_ci_high >= 0.5)
    relative = (result.relative_ci_low <= 0.05) & (result.relative_ci_high >= 0.05)

    # Binomial sd of a 95% rate over 2000 draws is 0.5%: these bounds are 4 sd wide.
    assert 0.93 <= absolute.mean() <= 0.97
    assert 0.93 <= relative.mean() <= 0.97


def test_degenerate_cells_get_a_reason_and_the_good_cells_beside_them_are_computed() -> None:
    rng = np.random.default_rng(3)
    good_c, good_t = rng.normal(3, 1, 100), rng.normal(3.4, 1, 100)
    cells = [
        ((0, 0.0, 0.0), (10, 5.0, 9.0), "control arm has no units yet"),
        ((10, 5.0, 9.0), (1, 2.0, 4.0), "treatment arm has 1 unit"),
        ((50, 150.0, 450.0), (60, 180.0, 540.0), "no variance in either arm"),
        ((50, 0.0, 0.0), (60, 0.0, 0.0), "no events yet"),
        ((50, 100.0, 10.0), (60, 10.0, 20.0), "inconsistent sufficient statistics"),
        ((50, float("nan"), 1.0), (60, 10.0, 20.0), "must be finite"),
        ((2.5, 1.0, 1.0), (60, 10.0, 20.0), "whole number"),
        (_sufficient(good_c), _sufficient(good_t), None),
    ]
    control = np.array([c for c, _, _ in cells], dtype=float)
    treatment = np.array([t for _, t, _ in cells], dtype=float)

    result = welch_t_test(*control.T, *treatment.T)

    for index, (_, _, expected_reason) in enumerate(cells):
        cell = result.cell(index)
        if expected_reason is None:
            assert cell.reason is None
            assert cell.p_value == pytest.approx(
                scipy_stats.ttest_ind(good_t, good_c, equal_var=False).pvalue, rel=RTOL
            )
        else:
            assert cell.reason is not None and expected_reason in cell.reason
            assert cell.p_value is None and cell.difference_ci is None
            assert not cell.significant
    for field in ("difference", "difference_ci_low", "p_value", "relative", "statistic"):
        assert np.isfinite(np.ma.getdata(getattr(result, field))).all()


def test_zero_control_mean_leaves_the_absolute_effect_and_explains_the_relative_one() -> None:
    control = np.array([-1.0, 1.0, -2.0, 2.0])
    treatment = np.array([0.5, 1.5, 2.5, 3.5])
    cell = welch_t_test(*_sufficient(control), *_sufficient(treatment)).cell(0)
    assert cell.difference == pytest.approx(2.0)
    assert cell.p_value is not None
    assert cell.relative is None and cell.relative_ci is None
    assert cell.reason is not None and "relative effect is undefined" in cell.reason


def test_reproduces_the_published_welch_example() -> None:
    # Wikipedia, "Welch's t-test", section Examples, example 1 (retrieved 2024): two
    # samples of 15 with Welch t = -2.46, df ≈ 25.0, p = 0.021 (A1 minus A2).
    a1 = np.array(
        [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    )
    a2 = np.array(
        [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    )
    cell = welch_t_test(*_sufficient(a2), *_sufficient(a1)).cell(0)  # treatment a1
    assert cell.statistic == pytest.approx(-2.46, abs=0.005)
    assert cell.p_value == pytest.approx(0.021, abs=0.0005)
