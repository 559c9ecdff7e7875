"""The scorecard's always-valid test (alpha split between the plan and after it): the Brownian
exit probability equals its closed-form series, the p-value and sequence are the two parts'
as documented, and under the null with many looks far past the plan it rejects at most alpha."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analytics.stats.planned_sequential import (
    PLAN_ALPHA_SHARE,
    brownian_exit_probability,
    exit_level,
    planned_sequential_test,
)
from analytics.stats.sequential import always_valid_test, mixing_variance_for

ALPHA = 0.05


def _exit_by_alternating_sum(level: float) -> float:
    """1 - Σ over all k of (-1)^k [Φ((2k+1)c) - Φ((2k-1)c)] (reflection principle)."""
    k = np.arange(-400, 401)
    inside = (-1.0) ** k * (
        stats.norm.cdf((2 * k + 1) * level) - stats.norm.cdf((2 * k - 1) * level)
    )
    return float(1.0 - inside.sum())


@pytest.mark.parametrize("level", [0.2, 0.7, 1.0, 1.19, 1.2, 1.21, 1.8, 2.2414, 2.5, 3.5, 5.0])
def test_exit_probability_equals_the_reflection_series(level: float) -> None:
    ours = float(brownian_exit_probability(level)[0])
    assert ours == pytest.approx(_exit_by_alternating_sum(level), rel=1e-11, abs=1e-15)


def test_exit_level_inverts_the_exit_probability() -> None:
    assert exit_level(ALPHA) == pytest.approx(2.2414, abs=1e-4)
    assert float(brownian_exit_probability(exit_level(0.025))[0]) == pytest.approx(0.025, rel=1e-10)
    assert float(brownian_exit_probability(0.0)[0]) == 1.0


def test_no_plan_share_is_the_plain_normal_mixture() -> None:
    estimate, variance, units = np.array([0.3, -0.1, 0.02]), np.array([0.01, 0.02, 0.001]), 500.0
    ours = planned_sequential_test(estimate, variance, units, 2000, alpha=ALPHA, plan_share=0.0)
    tau2 = mixing_variance_for(variance, units, 2000, alpha=ALPHA)
    mixture = always_valid_test(estimate, variance, tau2, alpha=ALPHA)
    np.testing.assert_allclose(ours.p_value, mixture.p_value, rtol=1e-14)
    np.testing.assert_allclose(ours.ci_high, mixture.ci_high, rtol=1e-14)


def test_p_value_is_the_smaller_of_the_two_parts_at_their_shares() -> None:
    share, after = PLAN_ALPHA_SHARE, ALPHA * (1 - PLAN_ALPHA_SHARE)
    estimate, variance = 0.25, 0.01  # z = 2.5
    for units in (800.0, 1800.0):
        within = planned_sequential_test(estimate, variance, units, 2000, alpha=ALPHA)
        plan_part = float(brownian_exit_probability(2.5 * np.sqrt(units / 2000))[0]) / share
        tau2 = mixing_variance_for(variance, units, 2000, alpha=after)
        mixture_part = float(always_valid_test(estimate, variance, tau2).p_value[0]) / (1 - share)
        assert float(within.p_value[0]) == pytest.approx(min(plan_part, mixture_part), rel=1e-12)
    assert plan_part < mixture_part  # near the plan, the plan's part decides
    # Past the plan only the mixture (tuned to the plan at the remaining alpha) is left.
    past = planned_sequential_test(estimate, variance, 3000, 2000, alpha=ALPHA)
    tau2 = mixing_variance_for(variance, 3000, 2000, alpha=after)
    mixture = always_valid_test(estimate, variance, tau2, alpha=after)
    assert float(past.p_value[0]) == pytest.approx(float(mixture.p_value[0]) / (1 - share))
    assert float(past.ci_high[0]) == pytest.approx(float(mixture.ci_high[0]), rel=1e-12)


@pytest.mark.parametrize("units", [50.0, 1000.0, 2000.0, 5000.0])
def test_sequence_bounds_are_where_the_test_starts_rejecting(units: float) -> None:
    estimate, variance, planned = np.array([0.4, -2.0]), np.array([0.02, 0.5]), 2000.0
    result = planned_sequential_test(estimate, variance, units, planned, alpha=ALPHA)
    for bound in (result.ci_low, result.ci_high):
        at_bound = planned_sequential_test(
            estimate, variance, units, planned, alpha=ALPHA, null_value=np.ma.getdata(bound)
        )
        np.testing.assert_allclose(at_bound.p_value, ALPHA, rtol=1e-8)


def test_null_crossings_with_many_looks_past_the_plan_stay_below_alpha() -> None:
    """The score process of a null experiment (Brownian motion in units), looked at 300
    times up to 3x the plan: the share that ever rejects is at most alpha (sd 0.0035)."""
    rng = np.random.default_rng(2023)
    runs, looks, planned = 5_000, 300, 100.0
    units = np.arange(1.0, looks + 1)
    score = rng.normal(0.0, 1.0, (runs, looks)).cumsum(axis=1)  # Σ of unit-level z's
    estimate, variance = score / units, 1.0 / units
    result = planned_sequential_test(estimate, variance, units, planned, alpha=ALPHA)
    rejected = np.ma.filled(result.p_value <= ALPHA, False).any(axis=1).mean()
    by_plan = np.ma.filled(result.p_value[:, :100] <= ALPHA, False).any(axis=1).mean()
    assert rejected <= ALPHA
    # The plan's half is nearly spent by the plan (100 looks is close to continuous).
    assert 0.01 <= by_plan <= PLAN_ALPHA_SHARE * ALPHA + 0.005
