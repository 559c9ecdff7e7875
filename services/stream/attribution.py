"""What one unit contributes to the per-variant sufficient statistics, and how that changes.

A unit's state holds what attribution needs whatever order its events arrive in: the ids
it has seen (deduplication), per experiment its earliest exposure and the variants it saw,
and its outcome history per event name as ``(timestamp, value)`` pairs. Recording an
event mutates the state and returns the *difference* it makes to the unit's contributions,
which the caller adds to the partition's running sums. Summing every difference a unit
ever produced gives exactly ``unit_contributions`` of its final state, so the aggregates
never depend on arrival order. Nothing here knows about Kafka or Faust.

The attribution rule (first exposure, exclusion, which outcomes count) is
``analytics.attribution.rule``'s, applied here per event: an excluded unit counts once in
``excluded`` under the variant of its first exposure and adds nothing to units or
metrics. For each event name the unit-level value is 1/0 (conversion), the number of
outcomes that count (count) or the exact sum of their values (sum); the unit adds x and x².
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from analytics.attribution.rule import ExposureSummary, counts_outcome, exposed, to_micros
from analytics.unit_metrics import UnitMetric, UnitValue, unit_value
from schemas.experiment import Aggregation

__all__ = [
    "AggregateKey",
    "Contributions",
    "ExposureSummary",
    "LiveMetric",
    "LiveMetrics",
    "StatsKey",
    "Sums",
    "SumsKey",
    "UnitState",
    "UnitsKey",
    "add_change",
    "add_exposure",
    "add_outcome",
    "difference",
    "record_exposure",
    "record_outcome",
    "to_micros",
    "unit_contributions",
]

_CONVERSION: Final = Aggregation.CONVERSION
_COUNT: Final = Aggregation.COUNT
_SUM: Final = Aggregation.SUM


class UnitsKey(NamedTuple):
    """Aggregate of units per variant; its value is ``(units, excluded_units)``."""

    tenant_id: str
    experiment_key: str
    variant_key: str


class StatsKey(NamedTuple):
    """Aggregate of one unit-level metric per variant; its value is ``(Σx, Σx²)``."""

    tenant_id: str
    experiment_key: str
    variant_key: str
    event: str
    aggregation: Aggregation


class SumsKey(NamedTuple):
    """Sums of one defined metric per variant; its value is the nine numbers
    ``(n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc)`` of ``analytics.unit_metrics``."""

    tenant_id: str
    experiment_key: str
    variant_key: str
    metric: str
    definition_hash: str


class LiveMetric(NamedTuple):
    """A metric of an experiment that the stream keeps live (see ``kept_live``)."""

    metric: UnitMetric
    definition_hash: str


#: (tenant, experiment) -> its live metrics; filled from the control topic by the worker.
LiveMetrics = Mapping[tuple[str, str], tuple[LiveMetric, ...]]
NO_LIVE_METRICS: Final[LiveMetrics] = {}

AggregateKey = UnitsKey | StatsKey | SumsKey
#: Aggregate key -> its numbers (two, or nine for ``SumsKey``; see the key types).
Contributions = dict[AggregateKey, tuple[float, ...]]
#: Running sums of contributions, by aggregate key (updated in place).
Sums = dict[AggregateKey, list[float]]


@dataclass(slots=True)
class UnitState:
    """Everything kept about one ``tenant:unit`` (one Faust table value)."""

    tenant_id: str
    partition: int
    seen_event_ids: set[int] = field(default_factory=set)  # UUIDs as 128-bit ints
    exposures: dict[str, ExposureSummary] = field(default_factory=dict)
    outcomes: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def record_exposure(
    state: UnitState,
    event_id: int,
    experiment: str,
    variant: str,
    timestamp: int,
    live: LiveMetrics = NO_LIVE_METRICS,
) -> Contributions:
    """Add one exposure to ``state``; return the change in the unit's contributions."""
    if event_id in state.seen_event_ids:
        return {}
    state.seen_event_ids.add(event_id)
    current = state.exposures.get(experiment)
    if (
        current is not None
        and variant in current.variants
        and (timestamp, variant) >= (current.first_timestamp, current.first_variant)
    ):
        return {}  # a repeat exposure: nothing changes (the common case)
    updated = exposed(current, timestamp, variant)
    if current is None:
        state.exposures[experiment] = updated
        return _experiment_contributions(state, experiment, updated, live)
    if updated == current:
        return {}
    old = _experiment_contributions(state, experiment, current, live)
    state.exposures[experiment] = updated
    return difference(_experiment_contributions(state, experiment, updated, live), old)


def add_exposure(
    sums: Sums,
    dirty: set[AggregateKey],
    state: UnitState,
    event_id: int,
    experiment: str,
    variant: str,
    timestamp: int,
    live: LiveMetrics,
) -> None:
    """``record_exposure``, its change added straight into ``sums`` (keys marked ``dirty``)."""
    if (
        experiment not in state.exposures
        and not state.outcomes
        and event_id not in state.seen_event_ids
        and (not live or (state.tenant_id, experiment) not in live)
    ):
        # The common case, a unit's first exposure with nothing to attribute yet: it
        # counts once under its variant.
        state.seen_event_ids.add(event_id)
        state.exposures[experiment] = exposed(None, timestamp, variant)
        _add_pair(sums, dirty, (state.tenant_id, experiment, variant), 1, 0)  # type: ignore[arg-type]
        return
    change = record_exposure(state, event_id, experiment, variant, timestamp, live)
    if change:
        add_change(sums, dirty, change)


def record_outcome(
    state: UnitState,
    event_id: int,
    event: str,
    value: float,
    timestamp: int,
    live: LiveMetrics = NO_LIVE_METRICS,
) -> Contributions:
    """Add one outcome to ``state``; return the change in the unit's contributions.

    Per experiment it counts for, the unit's count grows by one, its sum by ``value``
    and its conversion turns 1 if this is its first such outcome; only those keys change.
    """
    change: Sums = {}
    add_outcome(change, set(), state, event_id, event, value, timestamp, live)
    return {key: tuple(values) for key, values in change.items()}


def add_outcome(
    sums: Sums,
    dirty: set[AggregateKey],
    state: UnitState,
    event_id: int,
    event: str,
    value: float,
    timestamp: int,
    live: LiveMetrics,
) -> None:
    """``record_outcome``, its change added straight into ``sums`` (keys marked ``dirty``):
    the per-event path builds no change to apply afterwards."""
    if event_id in state.seen_event_ids:
        return
    state.seen_event_ids.add(event_id)
    history = state.outcomes.get(event)
    if history is None:
        history = state.outcomes[event] = []
    tenant = state.tenant_id
    before_sums = _live_sums(state, event, live) if live else None
    for experiment, summary in state.exposures.items():
        if not counts_outcome(summary, timestamp):
            continue
        since, variant, _ = summary
        before: list[float] = (
            [earlier for moment, earlier in history if moment >= since] if history else []
        )
        count = len(before)
        if count == 0:
            old_total, new_total = 0.0, value
        elif count == 1:
            # One IEEE addition is correctly rounded: the same as fsum of the two.
            old_total = before[0]
            new_total = old_total + value
        else:
            old_total = math.fsum(before)
            new_total = math.fsum((*before, value))
        # Plain tuples: equal to (and hashed like) the StatsKey they stand for, and cheaper.
        if not count:
            _add_pair(sums, dirty, (tenant, experiment, variant, event, _CONVERSION), 1, 1)  # type: ignore[arg-type]
        _add_pair(sums, dirty, (tenant, experiment, variant, event, _COUNT), 1, 2 * count + 1)  # type: ignore[arg-type]
        if new_total != old_total:
            _add_pair(
                sums,
                dirty,
                (tenant, experiment, variant, event, _SUM),  # type: ignore[arg-type]
                new_total - old_total,
                new_total * new_total - old_total * old_total,
            )
    history.append((timestamp, value))
    if before_sums:
        add_change(sums, dirty, difference(_live_sums(state, event, live), before_sums))


def add_change(sums: Sums, dirty: set[AggregateKey], change: Contributions) -> None:
    """Add a contributions change into running ``sums``; mark its keys ``dirty``."""
    for key, values in change.items():
        current = sums.get(key)
        if current is None:
            sums[key] = list(values)
        elif len(values) == 2:
            current[0] += values[0]
            current[1] += values[1]
        else:
            for index, value in enumerate(values):
                current[index] += value
    dirty.update(change)


def _add_pair(
    sums: Sums, dirty: set[AggregateKey], key: AggregateKey, first: float, second: float
) -> None:
    current = sums.get(key)
    if current is None:
        sums[key] = [first, second]
    else:
        current[0] += first
        current[1] += second
    dirty.add(key)


def unit_contributions(state: UnitState, live: LiveMetrics = NO_LIVE_METRICS) -> Contributions:
    """Everything the unit adds to the aggregates, computed from scratch."""
    contributions: Contributions = {}
    for experiment, summary in state.exposures.items():
        contributions.update(_experiment_contributions(state, experiment, summary, live))
    return contributions


def difference(new: Contributions, old: Contributions) -> Contributions:
    """``new - old`` per key, leaving out keys whose value did not change."""
    delta: Contributions = {}
    for key, values in new.items():
        previous = old.get(key)
        if previous is None:
            delta[key] = values
        elif values != previous:
            delta[key] = tuple(a - b for a, b in zip(values, previous, strict=True))
    for key, previous in old.items():
        if key not in new and any(previous):
            delta[key] = tuple(-value for value in previous)
    return delta


def _experiment_contributions(
    state: UnitState, experiment: str, summary: ExposureSummary, live: LiveMetrics
) -> Contributions:
    tenant = state.tenant_id
    variant = summary.first_variant
    # Plain tuples as keys: equal to (and hashed like) the named ones, and cheaper.
    if summary.excluded:
        return {(tenant, experiment, variant): (0, 1)}  # type: ignore[dict-item]
    contributions: Contributions = {(tenant, experiment, variant): (1, 0)}  # type: ignore[dict-item]
    for event, history in state.outcomes.items():
        _add_event_stats(contributions, tenant, experiment, summary, event, history)
    for metric, definition_hash in live.get((tenant, experiment), ()):
        key = SumsKey(tenant, experiment, variant, metric.name, definition_hash)
        contributions[key] = _sums(unit_value(state.outcomes, summary.first_timestamp, metric))
    return contributions


def _live_sums(state: UnitState, event: str, live: LiveMetrics) -> Contributions:
    """The unit's live-metric sums that an outcome of ``event`` can change."""
    tenant = state.tenant_id
    sums: Contributions = {}
    for experiment, summary in state.exposures.items():
        if summary.excluded:
            continue
        for metric, definition_hash in live.get((tenant, experiment), ()):
            if event in metric.events:
                key = SumsKey(
                    tenant, experiment, summary.first_variant, metric.name, definition_hash
                )
                sums[key] = _sums(unit_value(state.outcomes, summary.first_timestamp, metric))
    return sums


def _sums(value: UnitValue) -> tuple[float, ...]:
    """One unit's contribution to ``(n, Σx, Σx², Σy, Σy², Σxy, Σc, Σc², Σxc)``."""
    x, y, c = value
    y = 0.0 if y is None else y
    c = 0.0 if c is None else c
    return (1, x, x * x, y, y * y, x * y, c, c * c, x * c)


def _add_event_stats(
    into: Contributions,
    tenant: str,
    experiment: str,
    summary: ExposureSummary,
    event: str,
    history: list[tuple[int, float]],
) -> None:
    values = [value for timestamp, value in history if counts_outcome(summary, timestamp)]
    if not values:
        return
    count = len(values)
    # fsum is correctly rounded, so the unit's sum does not depend on arrival order.
    total = math.fsum(values)
    variant = summary.first_variant
    into[(tenant, experiment, variant, event, _CONVERSION)] = (1, 1)  # type: ignore[index]
    into[(tenant, experiment, variant, event, _COUNT)] = (count, count * count)  # type: ignore[index]
    into[(tenant, experiment, variant, event, _SUM)] = (total, total * total)  # type: ignore[index]
