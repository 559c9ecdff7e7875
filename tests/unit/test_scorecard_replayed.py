"""Scorecards of metrics the stream does not keep, from replayed per-variant sums: ratio
and mean metrics by the delta method, CUPED-adjusted comparisons, and a clear reason when
the metric has not been replayed. Checked against unit-level computations (numpy
covariances, statsmodels OLS and Welch) to a relative tolerance of 1e-8."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analytics.scorecard import build_scorecard
from analytics.unit_metrics import UnitValue, VariantSums
from schemas.experiment import Aggregation, Experiment

RTOL = 1e-8
Array = npt.NDArray[np.float64]

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [
            {
                "name": "revenue_per_session",
                "type": "ratio",
                "numerator": {"event": "purchase", "type": "sum"},
                "denominator": {"event": "session_start", "type": "count"},
            },
            {"name": "revenue", "event": "purchase", "type": "sum", "cuped_lookback_days": 14},
            {"name": "purchases", "event": "purchase", "type": "count", "role": "secondary"},
        ],
    }
)


def _sums(x: Array, y: Array | None = None, c: Array | None = None) -> VariantSums:
    sums = VariantSums()
    for i in range(len(x)):
        sums.add(
            UnitValue(
                float(x[i]),
                None if y is None else float(y[i]),
                None if c is None else float(c[i]),
            )
        )
    return sums


def _units(rng: np.random.Generator, n: int, lift: float) -> dict[str, Array]:
    sessions = 1.0 + rng.poisson(2.0, n)
    before = rng.gamma(2.0, 10.0, n)  # spend before exposure, correlated with spend after
    revenue = 0.7 * before + rng.gamma(sessions * 0.5, 4.0 * lift)
    return {"sessions": sessions, "before": before, "revenue": revenue}


@pytest.fixture(scope="module")
def data() -> dict[str, dict[str, Array]]:
    rng = np.random.default_rng(41)
    return {"control": _units(rng, 1500, 1.0), "treatment": _units(rng, 1600, 1.15)}


def _scorecard(data: dict[str, dict[str, Array]]) -> dict[str, Any]:
    metric_sums = {}
    for variant, units in data.items():
        metric_sums[(variant, "revenue_per_session")] = _sums(units["revenue"], units["sessions"])
        metric_sums[(variant, "revenue")] = _sums(units["revenue"], c=units["before"])
    scorecard = build_scorecard(
        "acme",
        EXPERIMENT,
        {variant: len(units["revenue"]) for variant, units in data.items()},
        {},
        metric_sums=metric_sums,
        scale="absolute",
    )
    return {metric.metric: metric for metric in scorecard.metrics}


def test_ratio_metric_uses_the_delta_method_on_the_replayed_sums(
    data: dict[str, dict[str, Array]],
) -> None:
    ratio = _scorecard(data)["revenue_per_session"]

    def mean_and_variance(units: dict[str, Array]) -> tuple[float, float]:
        x, y = units["revenue"], units["sessions"]
        gradient = np.array([1 / y.mean(), -x.mean() / y.mean() ** 2])
        return x.sum() / y.sum(), float(gradient @ np.cov(x, y) @ gradient / len(x))

    (r_c, v_c), (r_t, v_t) = (
        mean_and_variance(data["control"]),
        mean_and_variance(data["treatment"]),
    )
    se = np.sqrt(v_c + v_t)
    assert ratio.test == "ratio_delta" and ratio.aggregation == "ratio"
    assert ratio.control.mean == pytest.approx(r_c, rel=RTOL)
    assert ratio.treatment.units == 1600
    assert ratio.absolute_effect is not None
    assert ratio.absolute_effect.estimate == pytest.approx(r_t - r_c, rel=RTOL)
    half_width = ratio.absolute_effect.ci_high - ratio.absolute_effect.estimate
    assert half_width == pytest.approx(stats.norm.ppf(0.975) * se, rel=RTOL)
    expected_p = 2 * stats.norm.sf(abs(r_t - r_c) / se)
    assert ratio.p_value == pytest.approx(expected_p, rel=1e-6)
    assert ratio.sequential is not None and ratio.bayesian is not None


def test_cuped_effect_is_the_ancova_coefficient_and_shrinks_the_interval(
    data: dict[str, dict[str, Array]],
) -> None:
    revenue = _scorecard(data)["revenue"]
    y = np.concatenate([data["control"]["revenue"], data["treatment"]["revenue"]])
    c = np.concatenate([data["control"]["before"], data["treatment"]["before"]])
    treated = np.r_[np.zeros(1500), np.ones(1600)]
    ancova = sm.OLS(y, sm.add_constant(np.column_stack([treated, c]))).fit()

    assert revenue.test == "cuped_welch_t" and revenue.cuped is not None
    assert revenue.absolute_effect is not None
    assert revenue.absolute_effect.estimate == pytest.approx(ancova.params[1], rel=RTOL)
    # Welch's test on the adjusted values y - θ (c - c̄), θ the pooled within-arm slope.
    theta = revenue.cuped.theta
    adjusted = y - theta * (c - c.mean())
    welch = CompareMeans(DescrStatsW(adjusted[treated == 1]), DescrStatsW(adjusted[treated == 0]))
    low, high = welch.tconfint_diff(alpha=0.05, usevar="unequal")
    assert (revenue.absolute_effect.ci_low, revenue.absolute_effect.ci_high) == pytest.approx(
        (low, high), rel=RTOL
    )
    within = sm.OLS(y, np.column_stack([1 - treated, treated, c])).fit()
    assert theta == pytest.approx(within.params[2], rel=RTOL)
    rho = np.corrcoef(y - treated * ancova.params[1], c)[0, 1]
    assert revenue.cuped.variance_reduction == pytest.approx(rho**2, abs=0.05)
    assert revenue.cuped.lookback_days == 14


def test_a_metric_that_was_never_replayed_says_how_to_get_it() -> None:
    count = Aggregation.COUNT
    scorecard = build_scorecard(
        "acme",
        EXPERIMENT,
        {"control": 100, "treatment": 100},
        {
            ("control", "purchase", count): (40.0, 60.0),
            ("treatment", "purchase", count): (50.0, 80.0),
        },
    )
    by_name = {metric.metric: metric for metric in scorecard.metrics}
    missing = by_name["revenue_per_session"]
    assert missing.verdict == "not_computable" and missing.p_value is None
    assert missing.reason is not None
    assert "liftstream replay --metric revenue_per_session" in missing.reason
    assert missing.control.units == 100
    # The stream's own metrics are scored as before beside it.
    assert by_name["purchases"].test == "welch_t" and by_name["purchases"].p_value is not None
    assert missing.reason_code == "metric_not_computed"
    # A primary metric that needs replayed sums is not planned from them: the default
    # tuning, and the scorecard says how to set the plan.
    assert scorecard.planned_units_source == "default" and scorecard.planned_units == 10_000
    assert "set planned_units" in (scorecard.planned_units_basis or "")
