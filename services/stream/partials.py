"""Running per-partition sums of the unit contributions, and what to publish next.

Each source partition a worker owns has its own partial aggregates (a reader sums the
partitions). Applying a unit's contribution difference updates the sums and marks the
keys dirty; recording a processed offset marks the partition's progress dirty.
``take_publication`` turns everything dirty into aggregate records and progress records,
values and offsets read at the same instant, so that once the aggregate records are
published the progress records only claim events already reflected in them.

The sums are derived state: when a worker takes a partition they are rebuilt from the
partition's unit states (``assign``), the only state the worker persists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from schemas.aggregates import MetricStats, MetricSums, StreamProgress, VariantUnits
from services.stream.attribution import (
    AggregateKey,
    Contributions,
    StatsKey,
    Sums,
    SumsKey,
    UnitsKey,
    add_change,
)

log: Final = logging.getLogger(__name__)


@dataclass(frozen=True)
class Publication:
    """One publication: the records to send, aggregates first, then progress (not to be
    confused with ``snapshots``, the unit states kept on the snapshots topic)."""

    aggregates: list[VariantUnits | MetricStats | MetricSums]
    progress: list[StreamProgress]
    dirty_keys: dict[int, set[AggregateKey]] = field(repr=False)

    def __bool__(self) -> bool:
        return bool(self.aggregates or self.progress)

    def without_aggregates(self) -> Publication:
        return Publication([], self.progress, {})


@dataclass
class _Partition:
    sums: Sums = field(default_factory=dict)
    dirty: set[AggregateKey] = field(default_factory=set)
    next_offsets: dict[str, int] = field(default_factory=dict)
    progress_dirty: bool = False


class PartialAggregates:
    """Partial sufficient statistics of the partitions this worker currently owns."""

    def __init__(self) -> None:
        self._partitions: dict[int, _Partition] = {}

    def owns(self, partition: int) -> bool:
        return partition in self._partitions

    def assign(
        self,
        partition: int,
        contributions: Iterable[Contributions],
        next_offsets: Mapping[str, int],
    ) -> None:
        """Own ``partition``, its sums rebuilt from scratch; mark everything dirty.

        ``contributions`` yields every unit state's contributions; ``next_offsets`` are
        where consumption resumes, already covered by those states.
        """
        state = _Partition(next_offsets=dict(next_offsets))
        self._partitions[partition] = state
        for unit in contributions:
            add_change(state.sums, state.dirty, unit)
        state.dirty = set(state.sums)
        state.progress_dirty = True

    def owned(self) -> list[int]:
        return sorted(self._partitions)

    def next_offsets(self, partition: int) -> dict[str, int]:
        """Topic -> the next offset to process on ``partition``."""
        return dict(self._partitions[partition].next_offsets)

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)

    def apply(self, partition: int, delta: Contributions) -> None:
        state = self._partitions[partition]
        add_change(state.sums, state.dirty, delta)

    def sums_and_dirty(self, partition: int) -> tuple[Sums, set[AggregateKey]]:
        """The partition's running sums and its dirty keys, to update in place (valid
        until the next ``take_publication``, which starts a new dirty set)."""
        state = self._partitions[partition]
        return state.sums, state.dirty

    def processed(self, partition: int, topic: str, offset: int) -> None:
        state = self._partitions[partition]
        state.next_offsets[topic] = offset + 1
        state.progress_dirty = True

    def take_publication(self, now: datetime) -> Publication:
        """Records for everything dirty (which is then clean), values as of now."""
        aggregates: list[VariantUnits | MetricStats | MetricSums] = []
        progress: list[StreamProgress] = []
        dirty_keys: dict[int, set[AggregateKey]] = {}
        for partition, state in self._partitions.items():
            if state.dirty:
                dirty_keys[partition] = state.dirty
                for key in state.dirty:
                    try:
                        aggregates.append(_record(partition, key, state.sums[key], now))
                    except Exception:
                        # Sums the contract refuses (NaN) are one tenant's: that record is
                        # left out, never every tenant's publication.
                        log.exception("aggregate %s of partition %d not published", key, partition)
                state.dirty = set()
            if state.progress_dirty and state.next_offsets:
                progress.append(
                    StreamProgress(
                        source_partition=partition,
                        updated_at=now,
                        next_offsets=dict(state.next_offsets),
                    )
                )
                state.progress_dirty = False
        return Publication(aggregates, progress, dirty_keys)

    def restore(self, publication: Publication) -> None:
        """Mark a publication's records dirty again (sending it failed)."""
        for partition, keys in publication.dirty_keys.items():
            if partition in self._partitions:
                self._partitions[partition].dirty.update(keys)
        for record in publication.progress:
            if record.source_partition in self._partitions:
                self._partitions[record.source_partition].progress_dirty = True

    def totals(self, partition: int) -> dict[AggregateKey, tuple[float, ...]]:
        """The partition's current sums (for inspection and tests)."""
        return {key: tuple(values) for key, values in self._partitions[partition].sums.items()}


def _record(
    partition: int, key: AggregateKey, values: list[float], now: datetime
) -> VariantUnits | MetricStats | MetricSums:
    # Keys may be plain tuples equal to the named ones (the hot path builds those).
    if len(values) == 9:
        tenant, experiment, variant, metric, definition_hash = cast(SumsKey, key)
        n, *sums = values
        # Sums of squares are never negative; adding and removing can leave -1e-12.
        named: dict[str, Any] = {
            name: max(value, 0.0) if name in _SQUARES else value
            for name, value in zip(_SUM_FIELDS, sums, strict=True)
        }
        return MetricSums(
            source_partition=partition,
            updated_at=now,
            tenant_id=tenant,
            experiment_key=experiment,
            variant_key=variant,
            metric=metric,
            definition_hash=definition_hash,
            n=round(n),
            **named,
        )
    first, second = values
    if len(key) == 3:
        tenant, experiment, variant = cast(UnitsKey, key)
        return VariantUnits(
            source_partition=partition,
            updated_at=now,
            tenant_id=tenant,
            experiment_key=experiment,
            variant_key=variant,
            units=int(first),
            excluded_units=int(second),
        )
    tenant, experiment, variant, event, aggregation = cast(StatsKey, key)
    return MetricStats(
        source_partition=partition,
        updated_at=now,
        tenant_id=tenant,
        experiment_key=experiment,
        variant_key=variant,
        event=event,
        aggregation=aggregation,
        sum=first,
        sum_sq=max(second, 0.0),
    )


_SUM_FIELDS: Final = ("sum_x", "sum_xx", "sum_y", "sum_yy", "sum_xy", "sum_c", "sum_cc", "sum_xc")
_SQUARES: Final = frozenset({"sum_xx", "sum_yy", "sum_cc"})
