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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.power import sample_size_means, sample_size_proportions
from analytics.stats.sequential import DEFAULT_PLANNED_UNITS
from schemas.experiment import (
    DEFAULT_RELATIVE_MDE,
    MAX_PLANNED_UNITS,
    Aggregation,
    Experiment,
    MetricDefinition,
)
from schemas.results import PlannedUnitsSource

#: (variant, event, aggregation) -> (Σx, Σx²), as ``analytics.scorecard`` takes them.
Stats = Mapping[tuple[str, str, Aggregation], tuple[float, float]]


@dataclass(slots=True)
class Planning:
    units: int
    source: PlannedUnitsSource
    basis: str


def primary_metric(experiment: Experiment) -> MetricDefinition:
    return next((m for m in experiment.metrics if m.role == "primary"), experiment.metrics[0])


@dataclass(frozen=True)
class _Design:
    """What planning needs of an experiment definition, worked out once per object."""

    metric: MetricDefinition
    key: tuple[str, str, Aggregation]
    ratio: float
    share: float
    mde: float
    plannable: bool


def _design(experiment: Experiment) -> _Design:
    metric = primary_metric(experiment)
    control = experiment.control_key
    weights = experiment.variant_weights()
    return _Design(
        metric=metric,
        key=(control, metric.event, metric.type),
        ratio=weights[experiment.treatment_keys[0]] / weights[control],
        share=weights[control] / sum(weights.values()),
        mde=experiment.minimum_detectable_effect or DEFAULT_RELATIVE_MDE,
        plannable=not metric.needs_replay,
    )


def planned_units_for(
    experiments: Sequence[tuple[Experiment, Mapping[str, int], Stats]],
    *,
    override: int | None,
    alpha: float,
    power: float,
) -> list[Planning]:
    """Per experiment (with its units per variant and statistics), its ``Planning``."""
    if override is not None:
        return [Planning(override, "option", "set by the caller")] * len(experiments)
    plans: list[Planning | None] = [None] * len(experiments)
    designs: dict[int, _Design] = {}
    # Per (kind, ratio): experiment index, baseline mean, per-unit sd, mde.
    pending: dict[tuple[bool, float], list[tuple[int, float, float, float]]] = {}
    for index, (experiment, units, stats) in enumerate(experiments):
        if experiment.planned_units is not None:
            plans[index] = Planning(
                experiment.planned_units, "experiment", "the experiment's planned_units"
            )
            continue
        design = designs.get(id(experiment))
        if design is None:
            design = designs[id(experiment)] = _design(experiment)
        n = units.get(experiment.control_key, 0)
        if not design.plannable or n < 2:
            continue
        total, total_sq = stats.get(design.key, (0.0, 0.0))
        total, total_sq = float(total), float(total_sq)  # ValueError for non-numbers
        mean = total / n
        conversion = design.metric.type is Aggregation.CONVERSION
        if conversion:
            if not (0.0 < mean < 1.0 and mean * (1.0 + design.mde) < 1.0):
                continue
            sd = 0.0
        else:
            sd = (max(total_sq - total * total / n, 0.0) / (n - 1)) ** 0.5
            effect = abs(mean) * design.mde
            # Sums from hostile or extreme values: nothing to plan from (no 5xx later).
            if not (math.isfinite(sd) and sd > 0.0 and math.isfinite(effect) and effect > 0.0):
                continue
        pending.setdefault((conversion, design.ratio), []).append((index, mean, sd, design.mde))
    bases: dict[int, str] = {}
    for (conversion, ratio), rows in pending.items():
        index, mean, sd, mde = (np.array(column) for column in zip(*rows, strict=True))
        with np.errstate(all="ignore"):  # a tiny effect plans to infinity: capped below
            n_c = _control_units(conversion, mean, sd, mde, alpha, power, ratio)
        for i, control_units in zip(index.astype(int).tolist(), n_c.tolist(), strict=True):
            experiment = experiments[i][0]
            design = designs[id(experiment)]
            # A plan beyond any audience (a tiny effect) is capped at the schema's bound.
            total = int(min(max(np.ceil(control_units / design.share), 2.0), MAX_PLANNED_UNITS))
            basis = bases.get(id(design))
            if basis is None:
                basis = bases[id(design)] = (
                    f"liftstream plan for '{design.metric.name}' to detect a {design.mde:.1%} "
                    f"relative effect at {power:.0%} power, alpha {alpha:g}, from the "
                    "control's baseline so far"
                )
            plans[i] = Planning(total, "plan", basis)
    return [
        plan if plan is not None else _default(experiments[i][0]) for i, plan in enumerate(plans)
    ]


def _control_units(
    conversion: bool,
    mean: npt.NDArray[np.float64],
    sd: npt.NDArray[np.float64],
    mde: npt.NDArray[np.float64],
    alpha: float,
    power: float,
    ratio: float,
) -> npt.NDArray[np.float64]:
    """``liftstream plan``'s control units for a relative effect ``mde`` on ``mean``."""
    if conversion:
        n_c, _ = sample_size_proportions(mean, mean * mde, alpha=alpha, power=power, ratio=ratio)
    else:
        n_c, _ = sample_size_means(sd, np.abs(mean) * mde, alpha=alpha, power=power, ratio=ratio)
    return n_c


def _default(experiment: Experiment) -> Planning:
    metric = primary_metric(experiment)
    if metric.needs_replay:
        why = f"the primary metric '{metric.name}' is not planned from its sums: set planned_units"
    else:
        why = f"no baseline to plan from yet for the primary metric '{metric.name}'"
    return Planning(DEFAULT_PLANNED_UNITS, "default", why)
