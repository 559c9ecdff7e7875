"""Build experiments' scorecards from their units per variant and sufficient statistics.

Every metric of an experiment is compared, treatment by treatment, with the control:
conversion metrics with the two-proportion z test (Newcombe's interval when counts are
small, Wilson intervals for each arm's rate), count and sum metrics with Welch's t test.
Each comparison also gets its p-value adjusted for the experiment's many comparisons
(the experiment's ``correction``), an always-valid sequential test, Bayesian chance to
beat control and expected loss, and the effect detectable with the units so far. The
sample-ratio check decides whether the scorecard can be trusted at all.

One code path: ``scorecard_documents`` scores many experiments in one vectorised pass
(see ``analytics.scorecard_metrics``) and returns each scorecard as a JSON-ready dict
with the fields of ``schemas.results.Scorecard`` (the tests validate them against the
model); ``build_scorecards`` validates those into ``Scorecard`` objects, and
``build_scorecard`` is that for one experiment. Creating the ~10 pydantic objects of
each comparison costs far more than computing it, so callers that serve many scorecards
as JSON should use the documents.
"""

from __future__ import annotations

import gc
import math
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from analytics.planning import Planning, planned_units_for
from analytics.scorecard_metrics import (
    AnalysisOptions,
    ExperimentCells,
    StatsByCell,
    StopSignals,
    SumsByMetric,
    SumsSource,
    metric_comparisons,
)
from analytics.stats import sample_ratio_mismatch
from analytics.stats.analysis import DEFAULT_POWER, SCALES, Scale
from analytics.stats.multiple import Correction
from analytics.stats.power import z_multiplier
from analytics.stats.srm import SRM_THRESHOLD
from schemas.experiment import Experiment
from schemas.identifiers import TenantId
from schemas.results import Scorecard

__all__ = [
    "DEFAULT_ALPHA",
    "ScorecardInput",
    "StatsByCell",
    "SumsByMetric",
    "SumsSource",
    "build_scorecard",
    "build_scorecards",
    "scorecard_documents",
]

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class ScorecardInput:
    """One experiment to score.

    ``units`` maps variant -> units exposed (n); ``stats`` maps (variant, event,
    aggregation) -> (Σx, Σx²); a missing entry means no unit did that event.
    ``correction`` overrides the experiment's own. ``metric_sums`` maps (variant, metric
    name) -> sums, used for metrics beyond per-event sums (``needs_replay``);
    ``sums_source`` says per metric name whether they are the stream's or a replay's.
    """

    tenant_id: str
    experiment: Experiment
    units: Mapping[str, int]
    stats: StatsByCell
    excluded_units: int = 0
    correction: Correction | None = None
    metric_sums: SumsByMetric = field(default_factory=dict)
    sums_source: Mapping[str, SumsSource] = field(default_factory=dict)


def scorecard_documents(
    inputs: Sequence[ScorecardInput],
    *,
    alpha: float = DEFAULT_ALPHA,
    srm_threshold: float = SRM_THRESHOLD,
    planned_units: int | None = None,
    power: float = DEFAULT_POWER,
    scale: Scale = "relative",
) -> list[dict[str, Any]]:
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
        cells = [
            ExperimentCells(
                item.experiment,
                units,
                item.stats,
                item.correction or item.experiment.correction,
                item.metric_sums,
                item.sums_source,
                plan.units,
            )
            for item, units, plan in zip(inputs, checked, plans, strict=True)
        ]
        metrics, signals = metric_comparisons(cells, options)
        ratios = _sample_ratios(cells, srm_threshold)
        return [
            _scorecard(item, cell, comparisons, ratio, alpha, scale, plan, signal)
            for item, cell, comparisons, ratio, plan, signal in zip(
                inputs, cells, metrics, ratios, plans, signals, strict=True
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
    cells: ExperimentCells,
    metrics: list[dict[str, Any]],
    sample_ratio: dict[str, Any],
    alpha: float,
    scale: Scale,
    plan: Planning,
    signals: StopSignals,
) -> dict[str, Any]:
    experiment, units = item.experiment, cells.units
    warnings = _warnings(experiment, units, sample_ratio)
    may_stop, stop_reason = _stopping(signals, trustworthy=not warnings)
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
        "correction": cells.correction,
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


def _sample_ratios(
    experiments: Sequence[ExperimentCells], threshold: float
) -> list[dict[str, Any]]:
    """Each experiment's sample-ratio check; one chi-square call per number of variants."""
    by_size: dict[int, list[int]] = defaultdict(list)
    designs: dict[int, tuple[list[str], list[float]]] = {}
    for index, item in enumerate(experiments):
        by_size[len(item.experiment.variants)].append(index)
        if id(item.experiment) not in designs:
            variants = item.experiment.variants
            designs[id(item.experiment)] = ([v.key for v in variants], [v.weight for v in variants])
    checks: list[dict[str, Any]] = [{} for _ in experiments]
    for members in by_size.values():
        keys = [designs[id(experiments[i].experiment)][0] for i in members]
        observed = [
            [experiments[i].units.get(key, 0) for key in row]
            for i, row in zip(members, keys, strict=True)
        ]
        weights = [designs[id(experiments[i].experiment)][1] for i in members]
        result = sample_ratio_mismatch(
            np.array(observed, dtype=np.float64), np.array(weights), threshold=threshold
        )
        p_values = np.ma.getdata(result.p_value).tolist()
        untested = np.ma.getmaskarray(result.p_value).tolist()
        shares = result.expected_share.tolist()
        detected = result.detected.tolist()
        reasons = result.reason.tolist()
        for row, index in enumerate(members):
            checks[index] = {
                "observed_units": dict(zip(keys[row], observed[row], strict=True)),
                "expected_share": dict(zip(keys[row], shares[row], strict=True)),
                "p_value": None if untested[row] else p_values[row],
                "threshold": threshold,
                "srm_detected": detected[row],
                "reason": reasons[row],
            }
    return checks


def _stopping(signals: StopSignals, *, trustworthy: bool) -> tuple[bool, str]:
    """Whether the sequential tests allow stopping now, and why (or why not): a guardrail
    decided for the worse (its always-valid test decided and its chance to beat the
    control is below one half), or every primary metric decided."""
    if not trustworthy:
        return False, "the scorecard is not trustworthy (see warnings): fix that first"
    if signals.harmful:
        harmful = ", ".join(signals.harmful)
        return True, f"guardrail significantly worse (always-valid p): {harmful}"
    if not signals.has_primary:
        return False, "no primary metric to decide on"
    if signals.undecided:
        undecided = ", ".join(signals.undecided)
        return False, f"primary metrics not decided yet (always-valid p): {undecided}"
    return True, "every primary metric is decided (always-valid p below alpha)"


def _warnings(
    experiment: Experiment, units: Mapping[str, int], sample_ratio: dict[str, Any]
) -> list[str]:
    """What makes this scorecard untrustworthy; empty when it can be trusted."""
    warnings = []
    if sample_ratio["srm_detected"]:
        shares = ", ".join(
            f"{key} {count} (expected {sample_ratio['expected_share'][key]:.1%})"
            for key, count in sample_ratio["observed_units"].items()
        )
        warnings.append(
            f"sample ratio mismatch (p = {sample_ratio['p_value']:.2g} < "
            f"{sample_ratio['threshold']:g}): units {shares}; assignment or exposure "
            "logging is broken, so effects are not trustworthy"
        )
    if units.keys() <= sample_ratio["observed_units"].keys():  # only defined variants
        return warnings
    defined = {variant.key for variant in experiment.variants}
    for variant, count in sorted(units.items()):
        if variant not in defined and count > 0:
            warnings.append(
                f"{count} units were exposed to variant '{variant}', which the experiment "
                "does not define"
            )
    return warnings
