"""What the controller reads besides the control log: the stream's aggregates, summed over
partitions, and the tenants' dead letters, fed by the controller's Faust agents.

The aggregates topic is compacted and holds, per (tenant, experiment, variant, ...) and
source partition, the latest partial sufficient statistics; the view keeps the latest
record of each key and sums the partials when asked (``arm``). Dead letters are counted
per tenant with their time, so a check can count those since its rollout started. A
message that cannot be read is skipped and counted: it must never stop the controller.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import defaultdict
from datetime import datetime

from pydantic import ValidationError

from schemas.aggregates import MetricStats, MetricSums, VariantUnits, parse_aggregate
from schemas.deadletter import DeadLetter
from schemas.experiment import MetricDefinition
from schemas.rollout import ArmInput, MetricInput

log = logging.getLogger(__name__)

#: Dead-letter times kept per tenant (the newest): enough for any rate check.
MAX_DEAD_LETTER_TIMES = 100_000


class AggregateView:
    """The latest aggregates and dead-letter counts, fed one record at a time (the
    controller's Faust agents); thread-safe to read."""

    def __init__(self, aggregates_topic: str, deadletter_topic: str) -> None:
        self._topics = (aggregates_topic, deadletter_topic)
        self._lock = threading.Lock()
        self._units: dict[tuple[str, str, str, int], VariantUnits] = {}
        self._stats: dict[tuple[str, str, str, str, str, int], MetricStats] = {}
        self._sums: dict[tuple[str, str, str, str, int], MetricSums] = {}
        self._dead_letters: dict[str, list[float]] = defaultdict(list)
        #: The next offset of each (topic, partition) read, and the ends to reach.
        self._next: dict[tuple[str, int], int] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self.skipped = 0
        self.records = 0
        self.error: str | None = None

    def next_offset(self, topic: str, partition: int) -> int:
        with self._lock:
            return self._next.get((topic, partition), 0)

    def expect_ends(self, ends: dict[tuple[str, int], int]) -> None:
        """The topics' partitions end there now: ``caught_up`` once they are read."""
        with self._lock:
            self._ends = dict(ends)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset of each (topic, partition) read so far."""
        with self._lock:
            return dict(self._next)

    def lagging(self) -> dict[tuple[str, int], int]:
        """The partitions not read to their ends yet, with those ends."""
        with self._lock:
            return {
                place: end for place, end in self._ends.items() if self._next.get(place, 0) < end
            }

    @property
    def caught_up(self) -> bool:
        with self._lock:
            return all(self._next.get(place, 0) >= end for place, end in self._ends.items())

    def apply(
        self, topic: str, partition: int, offset: int, value: bytes | None, timestamp_ms: int
    ) -> bool:
        """Fold one record; False (nothing done) if it was read before."""
        place = (topic, partition)
        with self._lock:
            if offset < self._next.get(place, 0):
                return False
            self._next[place] = offset + 1
        self._apply(topic, value, timestamp_ms)
        return True

    def _apply(self, topic: str, value: bytes | None, timestamp_ms: int) -> None:
        if value is None:
            return
        try:
            if topic == self._topics[1]:
                letter = DeadLetter.model_validate_json(value)
                if letter.tenant_id is not None:
                    with self._lock:
                        times = self._dead_letters[letter.tenant_id]
                        times.append(timestamp_ms / 1000.0)
                        del times[:-MAX_DEAD_LETTER_TIMES]
                return
            record = parse_aggregate(value)
        except (ValidationError, ValueError):
            self.skipped += 1
            return
        with self._lock:
            self.records += 1
            if isinstance(record, VariantUnits):
                key = (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.source_partition,
                )
                self._units[key] = record
            elif isinstance(record, MetricStats):
                stats_key = (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.event,
                    record.aggregation.value,
                    record.source_partition,
                )
                self._stats[stats_key] = record
            elif isinstance(record, MetricSums):
                sums_key = (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.metric,
                    record.source_partition,
                )
                self._sums[sums_key] = record

    def dead_letters_since(self, tenant_id: str, since: datetime) -> int:
        with self._lock:
            times = self._dead_letters.get(tenant_id, [])
            return len(times) - bisect_left(times, since.timestamp())

    def arm(
        self, tenant_id: str, experiment: str, variant: str, metrics: list[MetricDefinition]
    ) -> ArmInput:
        """One arm's units and each metric's sufficient statistics, summed over partitions.

        A per-unit metric (conversion, count, sum) reads the stream's Σx, Σx² of its event
        and aggregation; a metric the stream keeps as sums (mean, ratio, windowed...)
        reads the sums of its current definition only."""
        with self._lock:
            units = [r for k, r in self._units.items() if k[:3] == (tenant_id, experiment, variant)]
            n = sum(r.units for r in units)
            excluded = sum(r.excluded_units for r in units)
            inputs: dict[str, MetricInput] = {}
            for metric in metrics:
                if metric.needs_replay:
                    parts = [
                        r
                        for k, r in self._sums.items()
                        if k[:4] == (tenant_id, experiment, variant, metric.name)
                        and r.definition_hash == metric.definition_hash
                    ]
                    inputs[metric.name] = MetricInput(
                        n=sum(p.n for p in parts),
                        sum_x=sum(p.sum_x for p in parts),
                        sum_xx=sum(p.sum_xx for p in parts),
                        sum_y=sum(p.sum_y for p in parts),
                        sum_yy=sum(p.sum_yy for p in parts),
                        sum_xy=sum(p.sum_xy for p in parts),
                    )
                else:
                    wanted = (tenant_id, experiment, variant, metric.event, metric.type.value)
                    parts_stats = [r for k, r in self._stats.items() if k[:5] == wanted]
                    inputs[metric.name] = MetricInput(
                        n=n,
                        sum_x=sum(p.sum for p in parts_stats),
                        sum_xx=sum(p.sum_sq for p in parts_stats),
                    )
            return ArmInput(units=n, excluded_units=excluded, metrics=inputs)
