"""Replay: one metric's per-variant sums for one experiment, from the raw log in DuckDB.

For a metric defined after its events were sent. The raw ``exposures`` and ``outcomes``
tables hold every event once (deduplicated by ``event_id`` when loaded). Units are
attributed by ``analytics.attribution`` (its SQL form, the stream's rule): the first
exposure is the earliest (ties: the smaller variant key), and a unit that saw several
variants is excluded and counted. Each included unit's outcome history is read in unit
order, in chunks, and turned into ``(x, y, c)`` by
``analytics.unit_metrics.unit_value``, the function the stream uses, so a replayed
metric equals the same metric maintained live.

A percentile cap needs every unit's value first: the uncapped values are kept (three
floats a unit), the cap is their percentile over the experiment's units (both arms), and
the capped values are then summed. ``since`` keeps only units first exposed at or after
it (outcomes before it still count for the CUPED covariate).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from analytics.attribution import to_micros, units_query
from analytics.unit_metrics import (
    UnitMetric,
    UnitValue,
    VariantSums,
    capped,
    percentile,
    unit_value,
)
from schemas.experiment import MetricDefinition

Cursor = duckdb.DuckDBPyConnection
#: Called with (units done, units in all) as the replay goes.
Progress = Callable[[int, int], None]

CHUNK_ROWS = 50_000

_UNITS = units_query()


_COMPUTED = {"type", "event", "numerator", "denominator", "cap", "window_hours"}
_COMPUTED |= {"cuped_lookback_days"}


def computation_key(metric: MetricDefinition | str) -> str:
    """What a metric's values depend on (not its name, role or direction), as JSON; a
    definition's JSON text is accepted too. Equal keys: a replay can be reused."""
    if isinstance(metric, str):
        metric = MetricDefinition.model_validate_json(metric)
    return metric.model_dump_json(include=_COMPUTED)


@dataclass
class ReplayResult:
    """Per variant: the metric's sums over included units, and the units excluded."""

    sums: dict[str, VariantSums] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    cap: float | None = None


def count_units(
    cursor: Cursor, tenant_id: str, experiment_key: str, since: datetime | None = None
) -> int:
    """Units the replay of ``experiment_key`` will visit (its progress total)."""
    row = cursor.execute(
        f"SELECT count(*) FROM ({_UNITS}) WHERE variants = 1 AND first_us >= $since",
        _parameters(tenant_id, experiment_key, since),
    ).fetchone()
    return int(row[0]) if row else 0


def replay_metric(
    cursor: Cursor,
    tenant_id: str,
    experiment_key: str,
    metric: MetricDefinition,
    *,
    since: datetime | None = None,
    variants: Sequence[str] = (),
    progress: Progress | None = None,
) -> ReplayResult:
    """``metric``'s sums per variant of the experiment, computed from the raw log;
    ``variants`` get (zero) sums even when no unit was exposed to them."""
    compiled = UnitMetric.of(metric)
    parameters = _parameters(tenant_id, experiment_key, since)
    result = ReplayResult(sums={variant: VariantSums() for variant in variants})
    excluded = cursor.execute(
        f"""SELECT variant_key, count(*) FROM ({_UNITS})
            WHERE variants > 1 AND first_us >= $since GROUP BY variant_key""",
        parameters,
    ).fetchall()
    result.excluded = {variant: int(count) for variant, count in excluded}
    total = count_units(cursor, tenant_id, experiment_key, since)
    if progress is not None:
        progress(0, total)
    percentile_cap = compiled.percentile_cap
    values: dict[str, tuple[array[float], array[float], array[float]]] = {}
    done = 0
    for variant, first_us, history in _unit_histories(cursor, compiled, parameters):
        if percentile_cap is None:
            value = unit_value(history, first_us, compiled)
            result.sums.setdefault(variant, VariantSums()).add(value)
        else:
            x, y, c = unit_value(history, first_us, compiled, cap=None)
            kept = values.setdefault(variant, (array("d"), array("d"), array("d")))
            kept[0].append(x)
            kept[1].append(_NONE if y is None else y)
            kept[2].append(_NONE if c is None else c)
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(done, total)
    if percentile_cap is not None and values:
        every_x = [x for xs, _, _ in values.values() for x in xs]
        result.cap = percentile(every_x, percentile_cap)
        for variant, (xs, ys, cs) in values.items():
            sums = result.sums.setdefault(variant, VariantSums())
            for x, y, c in zip(xs, ys, cs, strict=True):
                raw = UnitValue(x, None if y != y else y, None if c != c else c)
                sums.add(capped(raw, result.cap))
    if progress is not None:
        progress(done, total)
    return result


_NONE = float("nan")  # "no y / no c" in the float arrays of a percentile-capped replay


def _parameters(tenant_id: str, experiment_key: str, since: datetime | None) -> dict[str, object]:
    return {
        "tenant": tenant_id,
        "experiment": experiment_key,
        "since": -(2**62) if since is None else _micros(since),
    }


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"since: {moment.isoformat()} has no time zone; give one (e.g. Z)")
    return to_micros(moment)


def _unit_histories(
    cursor: Cursor, metric: UnitMetric, parameters: dict[str, object]
) -> Iterator[tuple[str, int, dict[str, list[tuple[int, float]]]]]:
    """(variant, first exposure µs, history) of each included unit, in unit order."""
    events = sorted(metric.events)
    cursor.execute(
        f"""WITH units AS (
                SELECT * FROM ({_UNITS}) WHERE variants = 1 AND first_us >= $since
            )
            SELECT u.unit_id, u.variant_key, u.first_us, o.event, epoch_us(o.timestamp), o.value
            FROM units u LEFT JOIN outcomes o
              ON o.tenant_id = $tenant AND o.unit_id = u.unit_id AND list_contains($events, o.event)
            ORDER BY u.unit_id""",
        {**parameters, "events": events},
    )
    current: str | None = None
    variant, first_us = "", 0
    history: dict[str, list[tuple[int, float]]] = {}
    while rows := cursor.fetchmany(CHUNK_ROWS):
        for unit_id, unit_variant, unit_first, event, timestamp, value in rows:
            if unit_id != current:
                if current is not None:
                    yield variant, first_us, history
                current, variant, first_us, history = unit_id, unit_variant, unit_first, {}
            if event is not None:
                history.setdefault(event, []).append((timestamp, value))
    if current is not None:
        yield variant, first_us, history
