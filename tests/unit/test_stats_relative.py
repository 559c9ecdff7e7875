"""The relative effect on its own scale: the delta-method interval with Student's t at the
Welch-Satterthwaite degrees of freedom (gbstats' ``TwoSidedTTest`` in closed form), its
p-value, and degenerate cells named by a reason code with no interval, p or chance."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from analytics.stats import ratio_test, two_proportion_z_test, welch_t_test
from analytics.stats.analysis import analyse_means
from analytics.stats.arms import MeanArms, RatioArms

Array = npt.NDArray[np.float64]


def _sufficient(values: Array) -> MeanArms:
    return MeanArms(len(values), float(values.sum()), float((values * values).sum()))


def _delta_t(control: Array, treatment: Array, alpha: float = 0.05) -> tuple[float, ...]:
    """(estimate, low, high, p) of m_t / m_c - 1: the delta method's variance, t quantile
    at the Welch-Satterthwaite dof (gbstats' frequentist_variance and TwoSidedTTest)."""
    m_c, m_t = control.mean(), treatment.mean()
    v_c, v_t = control.var(ddof=1) / len(control), treatment.var(ddof=1) / len(treatment)
    variance = v_t / m_c**2 + m_t**2 * v_c / m_c**4
    dof = (v_c + v_t) ** 2 / (v_c**2 / (len(control) - 1) + v_t**2 / (len(treatment) - 1))
    estimate = m_t / m_c - 1
    half = stats.t.ppf(1 - alpha / 2, dof) * np.sqrt(variance)
    p = 2 * stats.t.sf(abs(estimate) / np.sqrt(variance), dof)
    return estimate, estimate - half, estimate + half, p


def test_relative_interval_at_five_units_per_arm_is_the_t_based_delta_interval() -> None:
    control = np.array([3.1, 4.7, 2.2, 5.9, 3.6])
    treatment = np.array([4.0, 7.9, 3.3, 9.1, 2.6])

    cell = welch_t_test(*_sufficient(control), *_sufficient(treatment)).cell(0)

    estimate, low, high, p = _delta_t(control, treatment)
    assert cell.relative == pytest.approx(estimate, rel=1e-8)
    assert cell.relative_ci == pytest.approx((low, high), rel=1e-8)
    assert cell.relative_p_value == pytest.approx(p, rel=1e-8)
    # The z interval it replaces is visibly narrower at this size.
    z_half = stats.norm.ppf(0.975) * cell.relative_standard_error
    assert cell.relative_ci[1] - cell.relative >= 1.1 * z_half


def test_relative_p_value_matches_the_closed_form_for_every_test() -> None:
    rng = np.random.default_rng(11)
    control, treatment = rng.lognormal(1, 1, 400), rng.lognormal(1.15, 1, 450)
    cell = welch_t_test(*_sufficient(control), *_sufficient(treatment)).cell(0)
    assert (cell.relative, *cell.relative_ci, cell.relative_p_value) == pytest.approx(
        _delta_t(control, treatment), rel=1e-8
    )

    # Conversions: the same delta method on the rates (unit values 0 or 1).
    converted_c = (rng.random(3000) < 0.10).astype(float)
    converted_t = (rng.random(2900) < 0.12).astype(float)
    cell = two_proportion_z_test(
        len(converted_c), converted_c.sum(), len(converted_t), converted_t.sum()
    ).cell(0)
    # The arms' variances are p(1 - p) / n (what the z test uses), not the n - 1 form.
    m_c, m_t = converted_c.mean(), converted_t.mean()
    v_c = m_c * (1 - m_c) / len(converted_c)
    v_t = m_t * (1 - m_t) / len(converted_t)
    se = np.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)
    dof = (v_c + v_t) ** 2 / (v_c**2 / (len(converted_c) - 1) + v_t**2 / (len(converted_t) - 1))
    assert cell.relative_p_value == pytest.approx(
        2 * stats.t.sf(abs(m_t / m_c - 1) / se, dof), rel=1e-8
    )


def test_a_treatment_of_zeros_has_a_relative_estimate_but_no_interval_p_or_chance() -> None:
    control = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    zeros = np.zeros(5)

    analysis = analyse_means(_sufficient(control), _sufficient(zeros), scale="relative")
    cell = analysis.comparison.cell(0)

    assert cell.relative == -1.0  # the estimate is defined ...
    assert cell.relative_ci is None and cell.relative_p_value is None  # ... its spread is not
    assert cell.relative_reason_code == "zero_variance"
    assert np.ma.is_masked(analysis.bayesian.chance_to_win[0])
    assert np.ma.is_masked(analysis.sequential.p_value[0])
    # The absolute scale is Welch's test with the control's variance alone (as scipy's).
    scipy_p = stats.ttest_ind(zeros, control, equal_var=False).pvalue
    assert cell.p_value == pytest.approx(scipy_p, rel=1e-8) and cell.difference_ci is not None


@pytest.mark.parametrize(
    ("control", "code"),
    [
        (np.zeros(6), "no_events"),  # both arms all zero: nothing to compare
        (np.array([0.0, 0.0, 0.0, 2.0, -2.0, 0.0]), "control_mean_not_positive"),
        (np.array([-1.0, -3.0, -2.0, -5.0, 0.0, -1.0]), "control_mean_not_positive"),
    ],
)
def test_a_control_mean_at_or_below_zero_leaves_the_relative_effect_undefined(
    control: Array, code: str
) -> None:
    treatment = np.array([1.0, 0.0, 2.0, 0.0, 3.0, 1.0]) * (code != "no_events")
    cell = welch_t_test(*_sufficient(control), *_sufficient(treatment)).cell(0)

    assert cell.relative_reason_code == code
    assert cell.relative is None and cell.relative_ci is None and cell.relative_p_value is None
    if code == "control_mean_not_positive":  # the absolute difference is still tested
        assert cell.p_value is not None and cell.difference_ci is not None


def test_each_degenerate_case_has_its_code() -> None:
    # n < 2, NaN and infinite sums (Welch: n, Σx, Σx² per arm).
    cells = welch_t_test(
        [1, 10, 10, 10],
        [1.0, np.nan, 5.0, 5.0],
        [1.0, 10.0, np.inf, 9.0],
        [10, 10, 10, 10],
        [5.0, 5.0, 5.0, 5.0],
        [9.0, 9.0, 9.0, 2.0],
    )
    assert cells.reason_code.tolist() == [
        "too_few_units",
        "non_finite_sums",
        "non_finite_sums",
        "inconsistent_sums",
    ]
    # A ratio whose denominator sums to 0 in an arm.
    ratio = ratio_test(
        RatioArms(MeanArms(20, 5.0, 3.0), MeanArms(20, 0.0, 0.0), cross=0.0),
        RatioArms(MeanArms(20, 6.0, 4.0), MeanArms(20, 8.0, 5.0), cross=3.0),
    )
    assert ratio.cell(0).reason_code == "zero_denominator"
    assert ratio.cell(0).p_value is None and ratio.cell(0).relative_ci is None
