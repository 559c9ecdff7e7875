"""The units each experiment's sequential tests are tuned to (its planned sample size).

In order: the caller's ``override``; the experiment's own ``planned_units``; else what
``liftstream plan`` gives for the experiment's primary metric (the first metric whose
role is primary, else the first) to detect its ``minimum_detectable_effect`` (5%
relative when unset) at the scorecard's power and alpha, with the control arm's rate
(conversions) or mean and standard deviation (counts and sums) so far as the baseline.
Where there is nothing to plan from yet (no data, a zero baseline, a metric that needs a
replay), ``DEFAULT_PLANNED_UNITS``. The answer counts units over all variants: the plan's
control units over the control's share of the weights.

All experiments are planned in one vectorised call per metric kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from analytics.stats.power import sample_size_means, sample_size_proportions
from analytics.stats.sequential import DEFAULT_PLANNED_UNITS
from schemas.experiment import DEFAULT_RELATIVE_MDE, Aggregation, Experiment, MetricDefinition
from schemas.results import PlannedUnitsSource

#: (variant, event, aggregation) -> (Σx, Σx²), as ``analytics.scorecard`` takes them.
Stats = Mapping[tuple[str, str, Aggregation], tuple[float, float]]


@dataclass(frozen=True)
class Planning:
    units: int
    source: PlannedUnitsSource
    basis: str


def primary_metric(experiment: Experiment) -> MetricDefinition:
    return next((m for m in experiment.metrics if m.role == "primary"), experiment.metrics[0])


def planned_units_for(
    experiments: Sequence[tuple[Experiment, Mapping[str, int], Stats]],
    *,
    override: int | None,
    alpha: float,
    power: float,
) -> list[Planning]:
    """Per experiment (with its units per variant and statistics), its ``Planning``."""
    plans: list[Planning | None] = [None] * len(experiments)
    conversions: list[tuple[int, float, float, float]] = []  # index, rate, mde, ratio
    means: list[tuple[int, float, float, float, float]] = []  # index, mean, sd, mde, ratio
    for index, (experiment, units, stats) in enumerate(experiments):
        if override is not None:
            plans[index] = Planning(override, "option", "set by the caller")
            continue
        if experiment.planned_units is not None:
            plans[index] = Planning(
                experiment.planned_units, "experiment", "the experiment's planned_units"
            )
            continue
        metric = primary_metric(experiment)
        control = experiment.control_key
        n = units.get(control, 0)
        weights = experiment.variant_weights()
        ratio = weights[experiment.treatment_keys[0]] / weights[control]
        mde = experiment.minimum_detectable_effect or DEFAULT_RELATIVE_MDE
        if metric.needs_replay or n < 2:
            continue
        total, total_sq = stats.get((control, metric.event, metric.type), (0.0, 0.0))
        total, total_sq = float(total), float(total_sq)  # ValueError for non-numbers
        mean = total / n
        if metric.type is Aggregation.CONVERSION:
            if 0.0 < mean < 1.0 and mean * (1.0 + mde) < 1.0:
                conversions.append((index, mean, mde, ratio))
        else:
            variance = max(total_sq - total * total / n, 0.0) / (n - 1)
            if mean != 0.0 and variance > 0.0:
                means.append((index, mean, variance**0.5, mde, ratio))
    if conversions:
        index_c, rate, mde_c, ratio_c = (np.array(c) for c in zip(*conversions, strict=True))
        for ratio_value in np.unique(ratio_c):
            members = ratio_c == ratio_value
            n_c, _ = sample_size_proportions(
                rate[members],
                rate[members] * mde_c[members],
                alpha=alpha,
                power=power,
                ratio=float(ratio_value),
            )
            for i, control_units in zip(index_c[members].astype(int), n_c, strict=True):
                experiment = experiments[i][0]
                plans[i] = _planned(experiment, control_units, alpha, power)
    if means:
        index_m, mean, sd, mde_m, ratio_m = (np.array(c) for c in zip(*means, strict=True))
        for ratio_value in np.unique(ratio_m):
            members = ratio_m == ratio_value
            n_c, _ = sample_size_means(
                sd[members],
                np.abs(mean[members]) * mde_m[members],
                alpha=alpha,
                power=power,
                ratio=float(ratio_value),
            )
            for i, control_units in zip(index_m[members].astype(int), n_c, strict=True):
                experiment = experiments[i][0]
                plans[i] = _planned(experiment, control_units, alpha, power)
    return [
        plan
        if plan is not None
        else Planning(
            DEFAULT_PLANNED_UNITS,
            "default",
            f"no baseline to plan from yet for '{primary_metric(experiments[i][0]).name}'",
        )
        for i, plan in enumerate(plans)
    ]


def _planned(experiment: Experiment, control_units: float, alpha: float, power: float) -> Planning:
    weights = experiment.variant_weights()
    share = weights[experiment.control_key] / sum(weights.values())
    mde = experiment.minimum_detectable_effect or DEFAULT_RELATIVE_MDE
    total = max(int(np.ceil(control_units / share)), 2)
    return Planning(
        total,
        "plan",
        f"liftstream plan for '{primary_metric(experiment).name}': {int(control_units):,} "
        f"control units to detect a {mde:.1%} relative effect at {power:.0%} power, "
        f"alpha {alpha:g}, baseline from the control so far",
    )
