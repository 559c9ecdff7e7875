"""Scorecards of many experiments at once: the entry points.

One code path: ``scorecard_documents`` checks the inputs, plans each experiment's
sequential tuning (``analytics.planning``), compares every cell in one vectorised pass
(``analytics.scorecard.comparisons``) and returns each scorecard as a ``ScorecardDoc``,
a JSON-ready dict with the fields of ``schemas.results.Scorecard``;
``build_scorecards`` validates those into ``Scorecard`` objects, and
``build_scorecard`` is that for one experiment. Creating the ~10 pydantic objects of
each comparison costs far more than computing it, so callers that serve many scorecards
as JSON should use the documents.
"""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from analytics.planning import Planning, planned_units_for
from analytics.scorecard.comparisons import metric_comparisons
from analytics.scorecard.documents import MetricComparisonDoc, SampleRatioDoc, ScorecardDoc
from analytics.scorecard.figures import AnalysisOptions
from analytics.scorecard.inputs import ScorecardInput, StatsByCell, SumsByMetric, SumsSource
from analytics.scorecard.trust import StopSignals, sample_ratios, stopping, warnings_of
from analytics.stats.analysis import DEFAULT_POWER, SCALES, Scale
from analytics.stats.multiple import Correction
from analytics.stats.power import z_multiplier
from analytics.stats.srm import SRM_THRESHOLD
from schemas.experiment import Experiment
from schemas.identifiers import TenantId
from schemas.results import Scorecard

__all__ = ["DEFAULT_ALPHA", "build_scorecard", "build_scorecards", "scorecard_documents"]

DEFAULT_ALPHA = 0.05


def scorecard_documents(
    inputs: Sequence[ScorecardInput],
    *,
    alpha: float = DEFAULT_ALPHA,
    srm_threshold: float = SRM_THRESHOLD,
    planned_units: int | None = None,
    power: float = DEFAULT_POWER,
    scale: Scale = "relative",
) -> list[ScorecardDoc]:
    """The scorecards of ``inputs``, in order, as JSON-ready dicts (``Scorecard`` fields).

    Each scorecard is exactly the one its experiment gets alone: corrections apply
    within an experiment. ``scale`` is the scale of every headline figure (p-values,
    adjusted intervals, verdicts, sequential and Bayesian figures). ``planned_units``
    (all variants) tunes the sequential tests; unset, each experiment's own
    ``planned_units``, else ``liftstream plan``'s sample size for its primary metric
    (``analytics.planning``). ``power`` is for the detectable effect. Raises
    ``ValueError`` naming the experiment and field for units that are not whole
    numbers >= 0, a bad tenant id or bad options.
    """
    _check_options(alpha, power, scale, planned_units)
    _check_tenants(inputs)
    options = AnalysisOptions(alpha=alpha, power=power, scale=scale)
    with _cycle_collector_paused():
        checked = [_checked_units(item) for item in inputs]
        plans = planned_units_for(
            [
                (item.experiment, units, item.stats)
                for item, units in zip(inputs, checked, strict=True)
            ],
            override=planned_units,
            alpha=alpha,
            power=power,
        )
        planned = [plan.units for plan in plans]
        metrics, signals = metric_comparisons(inputs, checked, planned, options)
        ratios = sample_ratios(inputs, checked, srm_threshold)
        return [
            _scorecard(item, units, comparisons, ratio, alpha, scale, plan, signal)
            for item, units, comparisons, ratio, plan, signal in zip(
                inputs, checked, metrics, ratios, plans, signals, strict=True
            )
        ]


def build_scorecards(
    inputs: Sequence[ScorecardInput],
    *,
    alpha: float = DEFAULT_ALPHA,
    srm_threshold: float = SRM_THRESHOLD,
    planned_units: int | None = None,
    power: float = DEFAULT_POWER,
    scale: Scale = "relative",
) -> list[Scorecard]:
    """``scorecard_documents`` validated into ``Scorecard`` objects."""
    documents = scorecard_documents(
        inputs,
        alpha=alpha,
        srm_threshold=srm_threshold,
        planned_units=planned_units,
        power=power,
        scale=scale,
    )
    with _cycle_collector_paused():
        return [Scorecard.model_validate(document) for document in documents]


def build_scorecard(
    tenant_id: str,
    experiment: Experiment,
    units: Mapping[str, int],
    stats: StatsByCell,
    *,
    excluded_units: int = 0,
    alpha: float = DEFAULT_ALPHA,
    srm_threshold: float = SRM_THRESHOLD,
    correction: Correction | None = None,
    planned_units: int | None = None,
    power: float = DEFAULT_POWER,
    metric_sums: SumsByMetric | None = None,
    sums_source: Mapping[str, SumsSource] | None = None,
    scale: Scale = "relative",
) -> Scorecard:
    """The scorecard of ``experiment`` for ``tenant_id`` (see ``ScorecardInput``)."""
    item = ScorecardInput(
        tenant_id,
        experiment,
        units,
        stats,
        excluded_units,
        correction,
        metric_sums or {},
        sums_source or {},
    )
    (scorecard,) = build_scorecards(
        [item],
        alpha=alpha,
        srm_threshold=srm_threshold,
        planned_units=planned_units,
        power=power,
        scale=scale,
    )
    return scorecard


_pause_lock = threading.Lock()
_pause_depth = 0
_resume_collector = False


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while many scorecards are built.

    Thousands of new, acyclic objects (dicts, then pydantic models) make the collector
    run full collections over the whole heap several times per batch, which took most
    of the time of a 10,000-cell batch (see docs/benchmarks.md). Nothing built here
    forms a cycle, so reference counting frees it all the same. Nested and concurrent
    pauses are counted; the collector resumes after the last one, if it was running.
    """
    global _pause_depth, _resume_collector
    with _pause_lock:
        if _pause_depth == 0:
            _resume_collector = gc.isenabled()
            gc.disable()
        _pause_depth += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _resume_collector:
                gc.enable()


def _scorecard(
    item: ScorecardInput,
    units: Mapping[str, int],
    metrics: list[MetricComparisonDoc],
    sample_ratio: SampleRatioDoc,
    alpha: float,
    scale: Scale,
    plan: Planning,
    signals: StopSignals,
) -> ScorecardDoc:
    experiment = item.experiment
    warnings = warnings_of(experiment, units, sample_ratio)
    may_stop, stop_reason = stopping(signals, trustworthy=not warnings)
    return {
        "tenant_id": item.tenant_id,
        "experiment_key": experiment.key,
        "experiment_version": experiment.version,
        "status": experiment.status,
        "control_variant": experiment.control_key,
        "confidence_level": 1.0 - alpha,
        "total_units": sum(sample_ratio["observed_units"].values()),  # defined variants
        "excluded_units": _whole(item.excluded_units, experiment.key, "excluded_units"),
        "sample_ratio": sample_ratio,
        "trustworthy": not warnings,
        "warnings": warnings,
        "metrics": metrics,
        "correction": item.chosen_correction,
        "may_stop": may_stop,
        "stop_reason": stop_reason,
        "scale": scale,
        "planned_units": plan.units,
        "planned_units_source": plan.source,
        "planned_units_basis": plan.basis,
        "errors": [],  # the results API adds the pipeline's quarantined definitions
    }


def _whole(value: Any, experiment: str, field: str) -> int:
    """``value`` as an int when it is a whole number >= 0; ValueError naming the
    experiment and ``field``."""
    if type(value) is int and value >= 0:
        return value
    message = f"{experiment}: {field}: must be a whole number >= 0, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(message)
    if not (math.isfinite(value) and value >= 0 and value == int(value)):
        raise ValueError(message)
    return int(value)


def _checked_units(item: ScorecardInput) -> Mapping[str, int]:
    units = item.units
    if all([type(count) is int and count >= 0 for count in units.values()]):
        return units
    key = item.experiment.key
    return {variant: _whole(count, key, f"units['{variant}']") for variant, count in units.items()}


_tenant_id = TypeAdapter(TenantId)


def _check_tenants(inputs: Sequence[ScorecardInput]) -> None:
    for tenant_id in {item.tenant_id for item in inputs}:
        try:
            _tenant_id.validate_python(tenant_id)
        except ValidationError:
            raise ValueError(
                f"tenant_id: {tenant_id!r} is not a tenant id (lower-case letters, digits, "
                "'_' and '-', at most 64)"
            ) from None


def _check_options(alpha: float, power: float, scale: str, planned_units: int | None) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale: '{scale}' is not one of {list(SCALES)}")
    if planned_units is not None and not (type(planned_units) is int and planned_units > 0):
        raise ValueError(f"planned_units: must be a whole number > 0, got {planned_units!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be between 0 and 1, got {alpha!r}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power: must be between 0 and 1, got {power!r}")
    if z_multiplier(alpha, power) <= 0:
        raise ValueError(
            f"power: {power!r} is too low for alpha {alpha!r}: no effect size reaches it"
        )
