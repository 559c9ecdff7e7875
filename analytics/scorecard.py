"""Build an experiment's scorecard from its units per variant and sufficient statistics.

Every metric of the experiment is compared, treatment by treatment, with the control:
conversion metrics with the two-proportion z test, count and sum metrics with Welch's
t test. The sample-ratio check decides whether the scorecard can be trusted at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from analytics.stats import (
    Comparison,
    ComparisonCell,
    sample_ratio_mismatch,
    two_proportion_z_test,
    welch_t_test,
)
from analytics.stats.srm import SRM_THRESHOLD
from schemas.experiment import Aggregation, Experiment, MetricDefinition
from schemas.results import (
    ArmSummary,
    Interval,
    MetricComparison,
    SampleRatioCheck,
    Scorecard,
    TestName,
    Verdict,
)

#: (variant, event, aggregation) -> (Σx, Σx²) summed over the stream's partitions.
StatsByCell = Mapping[tuple[str, str, Aggregation], tuple[float, float]]

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class _Cell:
    metric: MetricDefinition
    treatment: str


def build_scorecard(
    tenant_id: str,
    experiment: Experiment,
    units: Mapping[str, int],
    stats: StatsByCell,
    *,
    excluded_units: int = 0,
    alpha: float = DEFAULT_ALPHA,
    srm_threshold: float = SRM_THRESHOLD,
) -> Scorecard:
    """The scorecard of ``experiment`` for ``tenant_id``.

    ``units`` maps variant -> units exposed (n); ``stats`` maps (variant, event,
    aggregation) -> (Σx, Σx²). A missing entry means no unit did that event: Σx = Σx² = 0.
    """
    control = experiment.control_key
    cells = [_Cell(m, t) for m in experiment.metrics for t in experiment.treatment_keys]
    results = _compare(cells, control, units, stats, alpha)
    sample_ratio = _sample_ratio(experiment, units, srm_threshold)
    warnings = _warnings(experiment, units, sample_ratio)
    return Scorecard(
        tenant_id=tenant_id,
        experiment_key=experiment.key,
        experiment_version=experiment.version,
        status=experiment.status,
        control_variant=control,
        confidence_level=1.0 - alpha,
        total_units=sum(units.get(v.key, 0) for v in experiment.variants),
        excluded_units=excluded_units,
        sample_ratio=sample_ratio,
        trustworthy=not warnings,
        warnings=warnings,
        metrics=[
            _metric_comparison(cell, result, control, units)
            for cell, result in zip(cells, results, strict=True)
        ],
    )


def _compare(
    cells: list[_Cell],
    control: str,
    units: Mapping[str, int],
    stats: StatsByCell,
    alpha: float,
) -> list[ComparisonCell]:
    """One vectorised call per test over all cells that use it, back in cell order."""

    def arm(variant: str, metric: MetricDefinition) -> tuple[float, float, float]:
        total, total_sq = stats.get((variant, metric.event, metric.type), (0.0, 0.0))
        return float(units.get(variant, 0)), total, total_sq

    results: list[ComparisonCell | None] = [None] * len(cells)
    conversion = [i for i, c in enumerate(cells) if c.metric.type is Aggregation.CONVERSION]
    means = [i for i, c in enumerate(cells) if c.metric.type is not Aggregation.CONVERSION]
    if conversion:
        c_arm = np.array([arm(control, cells[i].metric) for i in conversion])
        t_arm = np.array([arm(cells[i].treatment, cells[i].metric) for i in conversion])
        _place(
            results,
            conversion,
            two_proportion_z_test(c_arm[:, 0], c_arm[:, 1], t_arm[:, 0], t_arm[:, 1], alpha=alpha),
        )
    if means:
        c_arm = np.array([arm(control, cells[i].metric) for i in means])
        t_arm = np.array([arm(cells[i].treatment, cells[i].metric) for i in means])
        _place(results, means, welch_t_test(*c_arm.T, *t_arm.T, alpha=alpha))
    return [r for r in results if r is not None]


def _place(
    results: list[ComparisonCell | None], indices: list[int], comparison: Comparison
) -> None:
    for position, index in enumerate(indices):
        results[index] = comparison.cell(position)


def _metric_comparison(
    cell: _Cell, result: ComparisonCell, control: str, units: Mapping[str, int]
) -> MetricComparison:
    metric = cell.metric
    return MetricComparison(
        metric=metric.name,
        event=metric.event,
        aggregation=metric.type,
        role=metric.role,
        direction=metric.direction,
        test=cast(TestName, result.test),
        control=ArmSummary(
            variant_key=control, units=units.get(control, 0), mean=result.control_mean
        ),
        treatment=ArmSummary(
            variant_key=cell.treatment,
            units=units.get(cell.treatment, 0),
            mean=result.treatment_mean,
        ),
        absolute_effect=_interval(result.difference, result.difference_ci),
        relative_effect=_interval(result.relative, result.relative_ci),
        p_value=result.p_value,
        significant=result.significant,
        verdict=_verdict(result, metric),
        reason=result.reason,
    )


def _interval(estimate: float | None, ci: tuple[float, float] | None) -> Interval | None:
    if estimate is None or ci is None:
        return None
    return Interval(estimate=estimate, ci_low=ci[0], ci_high=ci[1])


def _verdict(result: ComparisonCell, metric: MetricDefinition) -> Verdict:
    if result.p_value is None or result.difference is None:
        return "not_computable"
    if not result.significant or result.difference == 0:
        return "inconclusive"
    went_up = result.difference > 0
    return "better" if went_up == (metric.direction == "increase") else "worse"


def _sample_ratio(
    experiment: Experiment, units: Mapping[str, int], threshold: float
) -> SampleRatioCheck:
    keys = [variant.key for variant in experiment.variants]
    observed = [units.get(key, 0) for key in keys]
    result = sample_ratio_mismatch(
        observed, [v.weight for v in experiment.variants], threshold=threshold
    )
    p_value = result.p_value.ravel()[0]
    return SampleRatioCheck(
        observed_units=dict(zip(keys, observed, strict=True)),
        expected_share={k: float(s) for k, s in zip(keys, result.expected_share, strict=True)},
        p_value=None if np.ma.is_masked(p_value) else float(p_value),
        threshold=threshold,
        srm_detected=bool(result.detected.ravel()[0]),
        reason=result.reason.ravel()[0],
    )


def _warnings(
    experiment: Experiment, units: Mapping[str, int], sample_ratio: SampleRatioCheck
) -> list[str]:
    """What makes this scorecard untrustworthy; empty when it can be trusted."""
    warnings = []
    if sample_ratio.srm_detected:
        shares = ", ".join(
            f"{key} {count} (expected {sample_ratio.expected_share[key]:.1%})"
            for key, count in sample_ratio.observed_units.items()
        )
        warnings.append(
            f"sample ratio mismatch (p = {sample_ratio.p_value:.2g} < "
            f"{sample_ratio.threshold:g}): units {shares}; assignment or exposure "
            "logging is broken, so effects are not trustworthy"
        )
    defined = {variant.key for variant in experiment.variants}
    for variant, count in sorted(units.items()):
        if variant not in defined and count > 0:
            warnings.append(
                f"{count} units were exposed to variant '{variant}', which the experiment "
                "does not define"
            )
    return warnings
