"""The scorecard: the right test per metric type, numbers that match statsmodels on the
unit-level data, SRM and undefined variants make it untrustworthy, degenerate metrics are
explained, and its JSON never carries NaN."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from analytics.scorecard import build_scorecard
from schemas.experiment import Aggregation, Experiment
from schemas.results import MetricComparison, Scorecard

RTOL = 1e-8

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout",
        "variants": [
            {"key": "blue", "weight": 25},
            {"key": "control", "weight": 50},
            {"key": "green", "weight": 25},
        ],
        "control": "control",
        "metrics": [
            {"name": "converted", "event": "purchase", "type": "conversion"},
            {"name": "revenue", "event": "purchase", "type": "sum"},
            {
                "name": "errors",
                "event": "error",
                "type": "count",
                "role": "guardrail",
                "direction": "decrease",
            },
        ],
    }
)

Units = dict[str, npt.NDArray[np.float64]]


def _unit_data(seed: int = 5) -> dict[str, Units]:
    """Per variant, per metric: one value per exposed unit (0 for units without events)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Units] = {}
    for variant, n, rate, spend, error_rate in [
        ("control", 2000, 0.10, 30.0, 0.20),
        ("blue", 1000, 0.16, 32.0, 0.20),
        ("green", 1000, 0.10, 30.0, 0.35),
    ]:
        converted = (rng.random(n) < rate).astype(float)
        data[variant] = {
            "converted": converted,
            "revenue": converted * rng.gamma(2.0, spend / 2.0, n),
            "errors": rng.poisson(error_rate, n).astype(float),
        }
    return data


def _sufficient_statistics(
    data: dict[str, Units],
) -> tuple[dict[str, int], dict[tuple[str, str, Aggregation], tuple[float, float]]]:
    units = {variant: len(values["converted"]) for variant, values in data.items()}
    stats = {}
    for metric in EXPERIMENT.metrics:
        for variant, values in data.items():
            x = values[metric.name]
            stats[(variant, metric.event, metric.type)] = (float(x.sum()), float((x * x).sum()))
    return units, stats


def _comparison(scorecard: Scorecard, metric: str, treatment: str) -> MetricComparison:
    return next(
        m for m in scorecard.metrics if m.metric == metric and m.treatment.variant_key == treatment
    )


def _strict_json(scorecard: Scorecard) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in scorecard JSON")

    return json.loads(scorecard.model_dump_json(), parse_constant=refuse)


def test_every_treatment_is_compared_with_the_control_using_the_metric_type_test() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)

    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)

    assert scorecard.control_variant == "control"
    assert [(m.metric, m.treatment.variant_key) for m in scorecard.metrics] == [
        (metric, treatment)
        for metric in ("converted", "revenue", "errors")
        for treatment in ("blue", "green")
    ]
    assert {m.metric: m.test for m in scorecard.metrics} == {
        "converted": "two_proportion_z",
        "revenue": "welch_t",
        "errors": "welch_t",
    }
    assert all(m.control.variant_key == "control" for m in scorecard.metrics)
    assert scorecard.total_units == sum(units.values())
    _strict_json(scorecard)


def test_numbers_match_statsmodels_on_the_unit_level_data() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)

    scorecard = build_scorecard("acme", EXPERIMENT, units, stats, scale="absolute")
    assert scorecard.scale == "absolute"
    assert all(m.scale == "absolute" for m in scorecard.metrics)

    control = data["control"]
    for treatment in ("blue", "green"):
        conversion = _comparison(scorecard, "converted", treatment)
        x_t, x_c = data[treatment]["converted"], control["converted"]
        _, p_value = proportions_ztest([x_t.sum(), x_c.sum()], [len(x_t), len(x_c)])
        assert conversion.p_value == pytest.approx(p_value, rel=RTOL)
        assert conversion.treatment.mean == pytest.approx(x_t.mean(), rel=RTOL)
        assert conversion.treatment.units == len(x_t)

        for metric in ("revenue", "errors"):
            comparison = _comparison(scorecard, metric, treatment)
            y_t, y_c = data[treatment][metric], control[metric]
            compare = CompareMeans(DescrStatsW(y_t), DescrStatsW(y_c))
            _, p_value, _ = compare.ttest_ind(usevar="unequal")
            low, high = compare.tconfint_diff(usevar="unequal")
            assert comparison.p_value == pytest.approx(p_value, rel=RTOL)
            assert comparison.absolute_effect is not None
            assert comparison.absolute_effect.estimate == pytest.approx(
                y_t.mean() - y_c.mean(), rel=RTOL
            )
            assert (comparison.absolute_effect.ci_low, comparison.absolute_effect.ci_high) == (
                pytest.approx((low, high), rel=RTOL)
            )
            assert comparison.relative_effect is not None
            assert comparison.relative_effect.estimate == pytest.approx(
                y_t.mean() / y_c.mean() - 1, rel=RTOL
            )


def test_verdict_reads_the_metric_direction() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)
    # green converts exactly as often as control: no effect at all.
    assert units["control"] == 2 * units["green"]
    same_rate = stats[("control", "purchase", Aggregation.CONVERSION)][0] / 2
    stats[("green", "purchase", Aggregation.CONVERSION)] = (same_rate, same_rate)

    # Unadjusted: blue's conversion lift (p = 0.014) counts on its own.
    scorecard = build_scorecard("acme", EXPERIMENT, units, stats, correction="none")

    # green raised the error rate from 0.20 to 0.35 per unit: a guardrail going the wrong way.
    errors = _comparison(scorecard, "errors", "green")
    assert errors.significant and errors.verdict == "worse"
    converted = _comparison(scorecard, "converted", "blue")
    assert converted.significant and converted.verdict == "better"
    unchanged = _comparison(scorecard, "converted", "green")
    assert unchanged.p_value == pytest.approx(1.0)
    assert not unchanged.significant and unchanged.verdict == "inconclusive"


def test_sample_ratio_mismatch_makes_the_scorecard_untrustworthy() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)
    units["blue"] = 1300  # designed 25% of traffic, got far more

    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)

    srm = scorecard.sample_ratio
    assert srm.srm_detected and srm.p_value is not None and srm.p_value < 0.001
    assert srm.observed_units == {"blue": 1300, "control": 2000, "green": 1000}
    assert srm.expected_share == {"blue": 0.25, "control": 0.5, "green": 0.25}
    assert not scorecard.trustworthy
    assert any("sample ratio mismatch" in warning for warning in scorecard.warnings)


def test_a_balanced_split_is_trustworthy() -> None:
    units, stats = _sufficient_statistics(_unit_data())
    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)
    assert not scorecard.sample_ratio.srm_detected
    assert scorecard.trustworthy and scorecard.warnings == []


def test_units_in_a_variant_the_experiment_does_not_define_are_a_warning() -> None:
    units, stats = _sufficient_statistics(_unit_data())
    units["purple"] = 12
    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)
    assert not scorecard.trustworthy
    assert any("'purple'" in warning for warning in scorecard.warnings)


def test_an_experiment_without_data_yet_explains_every_missing_figure() -> None:
    scorecard = build_scorecard("acme", EXPERIMENT, {}, {}, excluded_units=0)

    assert scorecard.total_units == 0
    assert scorecard.sample_ratio.reason == "no units yet"
    assert not scorecard.sample_ratio.srm_detected
    for metric in scorecard.metrics:
        assert metric.verdict == "not_computable"
        assert metric.p_value is None and metric.absolute_effect is None
        assert metric.reason == "control arm has no units yet"
        assert metric.control.mean is None
    _strict_json(scorecard)


def test_missing_statistics_mean_no_unit_did_the_event() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)
    del stats[("blue", "error", Aggregation.COUNT)]

    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)

    errors = _comparison(scorecard, "errors", "blue")
    assert errors.treatment.mean == 0.0
    assert errors.absolute_effect is not None
    assert errors.absolute_effect.estimate == pytest.approx(-data["control"]["errors"].mean())


def test_excluded_units_and_confidence_level_are_reported() -> None:
    units, stats = _sufficient_statistics(_unit_data())
    scorecard = build_scorecard("acme", EXPERIMENT, units, stats, excluded_units=7, alpha=0.1)
    assert scorecard.excluded_units == 7
    assert scorecard.confidence_level == pytest.approx(0.9)


def test_holm_by_default_and_benjamini_hochberg_when_the_experiment_chooses_it() -> None:
    units, stats = _sufficient_statistics(_unit_data())
    first = build_scorecard("acme", EXPERIMENT, units, stats, scale="absolute")
    raw = np.array([m.p_value for m in first.metrics])
    # The guardrail (errors) is a family of its own, apart from the primary metrics.
    guardrail = np.array([m.role == "guardrail" for m in first.metrics])

    holm = build_scorecard("acme", EXPERIMENT, units, stats, scale="absolute")
    bh_experiment = EXPERIMENT.model_copy(update={"correction": "benjamini_hochberg"})
    bh = build_scorecard("acme", bh_experiment, units, stats, scale="absolute")

    assert holm.correction == "holm" and bh.correction == "benjamini_hochberg"
    for scorecard, method in ((holm, "holm"), (bh, "fdr_bh")):
        expected = np.empty_like(raw)
        for family in (guardrail, ~guardrail):
            expected[family] = multipletests(raw[family], method=method)[1]
        adjusted = [m.adjusted_p_value for m in scorecard.metrics]
        assert adjusted == pytest.approx(expected, rel=RTOL)
        for metric in scorecard.metrics:
            assert metric.significant == (
                metric.adjusted_p_value is not None and metric.adjusted_p_value < 0.05
            )
    # Blue's modest conversion lift (p = 0.014) does not survive Holm over four comparisons.
    assert _comparison(holm, "converted", "blue").verdict == "inconclusive"


def test_every_comparison_carries_sequential_bayesian_and_power_figures() -> None:
    data = _unit_data()
    units, stats = _sufficient_statistics(data)

    scorecard = build_scorecard(
        "acme", EXPERIMENT, units, stats, planned_units=4000, scale="absolute"
    )
    assert scorecard.planned_units == 4000 and scorecard.planned_units_source == "option"

    errors = _comparison(scorecard, "errors", "green")  # error rate 0.20 -> 0.35
    assert errors.sequential is not None and errors.sequential.may_stop
    # The comparison's share of the planned units: control 50% + green 25%.
    assert errors.sequential.planned_units == 3000
    sequence = errors.sequential.confidence_sequence
    assert errors.absolute_effect is not None
    assert sequence.ci_low < errors.absolute_effect.ci_low  # wider: valid at every look
    assert errors.bayesian is not None and errors.bayesian.chance_to_beat_control < 0.001
    assert errors.bayesian.expected_loss_ship > errors.bayesian.expected_loss_keep
    assert "flat" in errors.bayesian.prior
    # A harmful guardrail is a reason to stop now.
    assert scorecard.may_stop and scorecard.stop_reason is not None
    assert "errors" in scorecard.stop_reason

    converted = _comparison(scorecard, "converted", "blue")
    assert converted.bayesian is not None and "Beta(1, 1)" in converted.bayesian.prior
    assert converted.interval_method == "wald"
    x_c = data["control"]["converted"]
    low, high = proportion_confint(x_c.sum(), len(x_c), method="wilson")
    assert converted.control.mean_ci is not None
    assert (converted.control.mean_ci.ci_low, converted.control.mean_ci.ci_high) == pytest.approx(
        (low, high), rel=RTOL
    )
    # Detectable effect at 80% power: (z_0.975 + z_0.8) standard errors of the difference.
    assert converted.detectable_effect is not None and converted.absolute_effect is not None
    half_width = converted.absolute_effect.ci_high - converted.absolute_effect.estimate
    assert converted.detectable_effect == pytest.approx(
        half_width * (1.959964 + 0.841621) / 1.959964, rel=1e-5
    )
    revenue = _comparison(scorecard, "revenue", "blue")
    assert revenue.control.mean_ci is None and revenue.interval_method == "welch_t"
    _strict_json(scorecard)


def test_a_scorecard_with_srm_never_says_stop() -> None:
    units, stats = _sufficient_statistics(_unit_data())
    units["blue"] = 1300
    scorecard = build_scorecard("acme", EXPERIMENT, units, stats)
    assert not scorecard.may_stop and "not trustworthy" in (scorecard.stop_reason or "")


def test_small_conversion_counts_get_newcombe_and_degenerate_cells_no_extras() -> None:
    experiment = Experiment.model_validate(
        {
            "key": "tiny",
            "variants": [{"key": "control", "weight": 50}, {"key": "b", "weight": 50}],
            "metrics": [{"name": "converted", "event": "purchase", "type": "conversion"}],
        }
    )
    small = build_scorecard(
        "acme",
        experiment,
        {"control": 40, "b": 42},
        {
            ("control", "purchase", Aggregation.CONVERSION): (2.0, 2.0),
            ("b", "purchase", Aggregation.CONVERSION): (7.0, 7.0),
        },
    ).metrics[0]
    low, high = confint_proportions_2indep(7, 42, 2, 40, method="newcomb", compare="diff")
    assert small.interval_method == "newcombe" and small.absolute_effect is not None
    assert (small.absolute_effect.ci_low, small.absolute_effect.ci_high) == pytest.approx(
        (low, high), rel=RTOL
    )

    everyone = build_scorecard(
        "acme",
        experiment,
        {"control": 40, "b": 42},
        {
            ("control", "purchase", Aggregation.CONVERSION): (40.0, 40.0),
            ("b", "purchase", Aggregation.CONVERSION): (42.0, 42.0),
        },
    )
    metric = everyone.metrics[0]
    assert metric.verdict == "not_computable" and "every unit converted" in (metric.reason or "")
    assert (
        metric.sequential is None and metric.bayesian is None and metric.detectable_effect is None
    )
    assert metric.adjusted_p_value is None and not everyone.may_stop
    _strict_json(everyone)
