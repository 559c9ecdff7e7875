"""Scorecard rows on one scale: the headline p, its correction and adjusted interval, the
verdict, the sequential test and the chance to win all belong to the relative effect (the
default) or all to the absolute one; corrections per metric role with intervals that
agree with them; sequential tests tuned to the experiment's planned units."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analytics.scorecard import build_scorecard
from analytics.stats import welch_t_test
from analytics.stats.multiple import adjust_p_values, interval_alpha
from analytics.stats.planned_sequential import PLAN_ALPHA_SHARE
from analytics.stats.power import sample_size_means, sample_size_proportions
from analytics.stats.sequential import mixing_factor
from schemas.experiment import Aggregation, Experiment
from schemas.results import MetricComparison, Scorecard

Array = npt.NDArray[np.float64]
METRICS = [
    {"name": "converted", "event": "purchase", "type": "conversion"},
    {"name": "revenue", "event": "purchase", "type": "sum"},
    {"name": "sessions", "event": "visit", "type": "count", "role": "secondary"},
    {"name": "errors", "event": "error", "type": "count", "role": "guardrail"},
    {"name": "latency", "event": "slow", "type": "sum", "role": "guardrail"},
]


def _experiment(**changes: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "key": "scales",
            "variants": [
                {"key": "control", "weight": 40},
                {"key": "b", "weight": 30},
                {"key": "c", "weight": 30},
            ],
            "metrics": METRICS,
            **changes,
        }
    )


def _data(seed: int = 3) -> dict[str, dict[str, Array]]:
    rng = np.random.default_rng(seed)
    data: dict[str, dict[str, Array]] = {}
    for variant, n, lift in (("control", 1600, 1.0), ("b", 1200, 1.12), ("c", 1200, 0.97)):
        converted = (rng.random(n) < 0.1 * lift).astype(float)
        data[variant] = {
            "converted": converted,
            "revenue": converted * rng.gamma(2.0, 15.0 * lift, n),
            "sessions": rng.poisson(2.0 * lift, n).astype(float),
            "errors": rng.poisson(0.3, n).astype(float),
            "latency": rng.gamma(2.0, 1.0, n),
        }
    return data


def _inputs(
    data: dict[str, dict[str, Array]],
) -> tuple[dict[str, int], dict[tuple[str, str, Aggregation], tuple[float, float]]]:
    units = {variant: len(values["converted"]) for variant, values in data.items()}
    sums = {}
    for variant, values in data.items():
        for metric in METRICS:
            x = values[metric["name"]]
            sums[(variant, metric["event"], Aggregation(metric["type"]))] = (
                float(x.sum()),
                float((x * x).sum()),
            )
    return units, sums


def _card(experiment: Experiment | None = None, **options: Any) -> Scorecard:
    units, sums = _inputs(_data())
    return build_scorecard("acme", experiment or _experiment(), units, sums, **options)


def _row(card: Scorecard, metric: str, variant: str) -> MetricComparison:
    return next(
        m for m in card.metrics if m.metric == metric and m.treatment.variant_key == variant
    )


def test_every_headline_figure_is_on_the_rows_scale() -> None:
    relative, absolute = _card(), _card(scale="absolute")
    assert relative.scale == "relative" and absolute.scale == "absolute"
    for rel, ab in zip(relative.metrics, absolute.metrics, strict=True):
        assert rel.scale == "relative" and ab.scale == "absolute"
        # Both scales' effects are on every row, whatever its scale.
        assert rel.absolute_effect == ab.absolute_effect
        assert rel.relative_effect == ab.relative_effect
        assert rel.relative_effect is not None and ab.absolute_effect is not None
        for row, effect in ((rel, rel.relative_effect), (ab, ab.absolute_effect)):
            assert row.sequential is not None and row.bayesian is not None
            sequence = row.sequential.confidence_sequence
            assert sequence.estimate == effect.estimate
            assert sequence.ci_low < effect.ci_low and effect.ci_high < sequence.ci_high
            assert row.adjusted_effect is not None
            assert row.adjusted_effect.estimate == effect.estimate
    # The relative p is the delta method's, not the absolute test's.
    revenue = welch_t_test(
        *(_sufficient(_data()["control"]["revenue"])), *(_sufficient(_data()["b"]["revenue"]))
    ).cell(0)
    assert _row(relative, "revenue", "b").p_value == pytest.approx(
        revenue.relative_p_value, rel=1e-12
    )
    assert _row(absolute, "revenue", "b").p_value == pytest.approx(revenue.p_value, rel=1e-12)
    # Chance to win on the relative scale: P(lift > 0) under the normal posterior.
    assert revenue.relative_standard_error is not None and revenue.relative is not None
    bayesian = _row(relative, "revenue", "b").bayesian
    assert bayesian is not None
    assert bayesian.chance_to_beat_control == pytest.approx(
        float(stats.norm.cdf(revenue.relative / revenue.relative_standard_error)), rel=1e-12
    )


def _sufficient(values: Array) -> tuple[int, float, float]:
    return len(values), float(values.sum()), float((values * values).sum())


@pytest.mark.parametrize("scale", ["relative", "absolute"])
def test_bonferroni_equals_statsmodels_per_metric_role(scale: str) -> None:
    card = _card(_experiment(correction="bonferroni"), scale=scale)
    for role in ("primary", "secondary", "guardrail"):
        rows = [m for m in card.metrics if m.role == role]
        raw = np.array([m.p_value for m in rows])
        expected = multipletests(raw, method="bonferroni")[1]
        assert [m.adjusted_p_value for m in rows] == pytest.approx(expected, rel=1e-12, abs=0)
        for row in rows:
            assert row.adjusted_confidence_level == pytest.approx(1 - 0.05 / len(rows), rel=1e-15)


@pytest.mark.parametrize("correction", ["bonferroni", "holm"])
def test_adjusted_intervals_are_welch_intervals_at_alpha_over_m(correction: str) -> None:
    data = _data()
    card = _card(_experiment(correction=correction), scale="absolute")
    relative_card = _card(_experiment(correction=correction))
    for metric, m in (("revenue", 4), ("sessions", 2), ("latency", 4)):  # family sizes
        for variant in ("b", "c"):
            control, treatment = data["control"][metric], data[variant][metric]
            at_m = welch_t_test(*_sufficient(control), *_sufficient(treatment), alpha=0.05 / m)
            cell = at_m.cell(0)
            row = _row(card, metric, variant)
            assert row.adjusted_effect is not None and cell.difference_ci is not None
            assert (row.adjusted_effect.ci_low, row.adjusted_effect.ci_high) == pytest.approx(
                cell.difference_ci, rel=1e-10
            )
            relative_row = _row(relative_card, metric, variant)
            assert relative_row.adjusted_effect is not None and cell.relative_ci is not None
            assert (
                relative_row.adjusted_effect.ci_low,
                relative_row.adjusted_effect.ci_high,
            ) == pytest.approx(cell.relative_ci, rel=1e-10)
            # Bonferroni: the interval excludes 0 exactly when the adjusted p is below alpha.
            if correction == "bonferroni":
                assert relative_row.adjusted_p_value is not None
                excludes = not (
                    relative_row.adjusted_effect.ci_low <= 0 <= relative_row.adjusted_effect.ci_high
                )
                assert excludes == (relative_row.adjusted_p_value < 0.05)


def test_benjamini_hochberg_intervals_agree_with_its_discoveries() -> None:
    rng = np.random.default_rng(8)
    p = np.concatenate([rng.uniform(0, 0.004, 6), rng.uniform(0.02, 1, 14)])
    for seed in range(20):  # many families: the property, not one case
        shuffled = np.random.default_rng(seed).permutation(p)
        adjusted = adjust_p_values(shuffled, "benjamini_hochberg")
        level = interval_alpha(adjusted, "benjamini_hochberg", 0.05)
        discoveries = int((np.ma.getdata(adjusted) <= 0.05).sum())
        assert np.allclose(np.ma.getdata(level), 0.05 * max(discoveries, 1) / p.size)
        # A p-value below its interval's alpha <=> the interval excludes 0 <=> discovered.
        assert ((shuffled <= np.ma.getdata(level)) == (np.ma.getdata(adjusted) <= 0.05)).all()


def test_a_zero_control_or_an_all_zero_treatment_explains_itself_on_the_row() -> None:
    units, sums = _inputs(_data())
    sums[("b", "purchase", Aggregation.SUM)] = (0.0, 0.0)  # b's revenue: all zeros
    sums[("control", "visit", Aggregation.COUNT)] = (0.0, 0.0)  # no control sessions
    card = build_scorecard("acme", _experiment(), units, sums)
    revenue, sessions = _row(card, "revenue", "b"), _row(card, "sessions", "c")
    for row, code in ((revenue, "zero_variance"), (sessions, "control_mean_not_positive")):
        assert row.reason_code == code and row.reason
        assert row.relative_effect is None and row.p_value is None
        assert row.sequential is None and row.bayesian is None and row.adjusted_effect is None
        assert row.verdict == "not_computable"
        assert row.absolute_effect is not None  # the absolute scale still has its figures
    absolute = build_scorecard("acme", _experiment(), units, sums, scale="absolute")
    assert _row(absolute, "revenue", "b").p_value is not None
    assert _row(absolute, "revenue", "b").reason_code == "zero_variance"  # relative's, noted


def test_sequential_tests_are_tuned_to_the_experiments_plan() -> None:
    data = _data()
    planned = _card(_experiment(planned_units=9000))
    assert (planned.planned_units, planned.planned_units_source) == (9000, "experiment")
    row = _row(planned, "converted", "b")
    assert row.sequential is not None and row.relative_effect is not None
    assert row.sequential.planned_units == 9000 * 0.7  # control 40% + b 30%
    # τ² = V · N / N* · factor, V the variance now of the log ratio (the relative scale's
    # sequential test runs on it), N the comparison's units now; the mixture holds the
    # half of alpha not spent by the plan.
    units = row.control.units + row.treatment.units
    control = data["control"]["converted"]
    treatment = data["b"]["converted"]
    m_c, m_t = control.mean(), treatment.mean()
    v_c, v_t = m_c * (1 - m_c) / len(control), m_t * (1 - m_t) / len(treatment)
    variance = v_t / m_t**2 + v_c / m_c**2
    assert row.sequential.mixing_variance == pytest.approx(
        variance * units / 6300 * mixing_factor(0.05 * (1 - PLAN_ALPHA_SHARE)), rel=1e-10
    )

    # Unset: what `liftstream plan` gives for the primary metric at a 5% relative effect.
    plan = _card()
    rate = m_c
    n_c, _ = sample_size_proportions(rate, rate * 0.05, ratio=30 / 40)
    assert plan.planned_units_source == "plan"
    # The sequence is the log ratio's, mapped back: exp(log ratio ± half-width) - 1.
    sequential = _row(plan, "converted", "b").sequential
    assert sequential is not None
    sequence = sequential.confidence_sequence
    log_low, log_high = np.log1p(sequence.ci_low), np.log1p(sequence.ci_high)
    assert (log_low + log_high) / 2 == pytest.approx(np.log(m_t / m_c), rel=1e-10)
    assert plan.planned_units == int(np.ceil(n_c[0] / 0.4))
    assert "converted" in (plan.planned_units_basis or "")
    # A primary mean metric plans with its standard deviation.
    revenue_first = _experiment(metrics=[METRICS[1], METRICS[0]], minimum_detectable_effect=0.1)
    card = _card(revenue_first)
    revenue = data["control"]["revenue"]
    n_c, _ = sample_size_means(revenue.std(ddof=1), revenue.mean() * 0.1, ratio=30 / 40)
    assert card.planned_units == int(np.ceil(n_c[0] / 0.4))
    # No data yet: the default, and it says so.
    empty = build_scorecard("acme", _experiment(), {}, {})
    assert empty.planned_units_source == "default" and empty.planned_units == 10_000


@pytest.mark.parametrize(
    ("total", "total_sq"),
    [(1e-300, 1e-290), (1e300, 1e300), (5.0, 1e308), (float("nan"), 1.0), (1.0, float("inf"))],
)
def test_extreme_sums_never_break_the_plan_or_the_scorecard(total: float, total_sq: float) -> None:
    experiment = _experiment(metrics=[METRICS[1]], correction="bonferroni")  # plans with its sd
    stats = {
        ("control", "purchase", Aggregation.SUM): (total, total_sq),
        ("b", "purchase", Aggregation.SUM): (total, total_sq),
        # c: ordinary values against a tiny or huge control: relative variances overflow.
        ("c", "purchase", Aggregation.SUM): (3e2, 1e154),
    }
    for scale in ("relative", "absolute"):
        card = build_scorecard(
            "acme", experiment, {"control": 40, "b": 30, "c": 30}, stats, scale=scale
        )  # validated: no NaN or infinity anywhere
        assert card.planned_units is not None and 2 <= card.planned_units <= 10**12
        assert card.planned_units_source in ("plan", "default")
        json.loads(card.model_dump_json())
        for row in card.metrics:  # an adjusted interval only with a real spread
            if row.adjusted_effect is not None:
                assert row.adjusted_effect.ci_low < row.adjusted_effect.ci_high
