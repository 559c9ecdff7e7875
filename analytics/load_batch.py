"""A batch of parsed log messages, gathered as columns ready for one DuckDB insert per table.

The loader adds each message it read (parsed, or rejected with a reason) together with
its Kafka position; ``AnalyticsStore.load`` then writes the whole batch, and the next
offsets it covers, in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from analytics.attribution import to_micros
from schemas.aggregates import (
    Aggregate,
    DefinitionError,
    MetricStats,
    MetricSums,
    VariantUnits,
)
from schemas.control import ControlEvent
from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.experiment import Experiment

Columns = dict[str, npt.NDArray[Any]]
#: The float sums of a ``MetricSums`` record (and of ``analytics.unit_metrics.VariantSums``).
SUM_COLUMNS = ("sum_x", "sum_xx", "sum_y", "sum_yy", "sum_xy", "sum_c", "sum_cc", "sum_xc")


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class _Table:
    """Rows of one table as tuples in column order, turned into columns on demand."""

    def __init__(self, *names: str, nullable: tuple[str, ...] = ()) -> None:
        self.names = names
        self.nullable = nullable
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def arrays(self) -> Columns:
        """Column name -> numpy array. A nullable integer column ``c`` becomes ``c`` (0 where
        null) and ``c_is_null``: DuckDB infers the integer width of an object array from a
        sample and would fail on a wider value further on."""
        arrays: Columns = {}
        columns = zip(*self.rows, strict=True) if self.rows else ([] for _ in self.names)
        for name, column in zip(self.names, columns, strict=True):
            values = list(column)
            if name in self.nullable:
                arrays[f"{name}_is_null"] = np.array([v is None for v in values], dtype=np.bool_)
                values = [0 if v is None else v for v in values]
            arrays[name] = _to_array(values)
        return arrays


def _to_array(values: list[Any]) -> npt.NDArray[Any]:
    sample = values[0] if values else None
    if isinstance(sample, bool):
        return np.array(values, dtype=np.bool_)
    if isinstance(sample, int):
        return np.array(values, dtype=np.int64)
    if isinstance(sample, float):
        return np.array(values, dtype=np.float64)
    return np.array(values, dtype=object)


_ENVELOPE = ("event_id", "tenant_id", "unit_id", "timestamp_us", "received_us", "schema_version")
_POSITION = ("kafka_partition", "kafka_offset")


def _envelope(event: ExposureEvent | OutcomeEvent) -> tuple[Any, ...]:
    received = event.received_at
    return (
        str(event.event_id),
        event.tenant_id,
        event.unit_id,
        to_micros(event.timestamp),
        None if received is None else to_micros(received),
        event.schema_version,
    )


class LoadBatch:
    """Parsed messages by destination table, plus the next offset per topic partition.

    Each ``add_*`` appends one row whose values follow its table's column names.
    """

    def __init__(self) -> None:
        self.exposures = _Table(
            *_ENVELOPE,
            *("experiment_key", "variant_key", "experiment_version", "attributes"),
            *_POSITION,
            nullable=("received_us",),
        )
        self.outcomes = _Table(
            *_ENVELOPE, "event", "value", "properties", *_POSITION, nullable=("received_us",)
        )
        self.variant_units = _Table(
            *("tenant_id", "experiment_key", "variant_key", "source_partition"),
            *("units", "excluded_units", "updated_us", "kafka_offset"),
        )
        self.metric_stats = _Table(
            *("tenant_id", "experiment_key", "variant_key", "event", "aggregation"),
            *("source_partition", "sum", "sum_sq", "updated_us", "kafka_offset"),
        )
        self.metric_sums = _Table(
            *("tenant_id", "experiment_key", "variant_key", "metric", "source_partition"),
            *("definition_hash", "n", *SUM_COLUMNS, "updated_us", "kafka_offset"),
        )
        self.stream_progress = _Table(
            "source_partition", "next_offsets", "updated_us", "kafka_offset"
        )
        self.control_events = _Table(
            *("event_id", "type", "tenant_id", "experiment_key", "author", "reason"),
            *("occurred_us", "payload"),
            *_POSITION,
        )
        self.experiment_definitions = _Table(
            *("event_id", "tenant_id", "experiment_key", "author", "reason", "occurred_us"),
            *("version", "status", "definition"),
            *_POSITION,
        )
        self.deadletters = _Table(
            *_POSITION,
            *("stage", "source_topic", "source_partition", "source_offset", "reason"),
            *("errors", "payload", "failed_us", "tenant_id"),
            nullable=("source_partition", "source_offset"),
        )
        self.rejections = _Table("topic", *_POSITION, "reason", "payload", "tenant_id", "subject")
        self.definition_errors = _Table(
            *("tenant_id", "experiment_key", "metric", "definition_hash", "stage", "reason"),
            *("updated_us", "kafka_offset"),
        )
        #: (tenant, experiment or '' for outcomes, kind) -> messages loaded in this batch.
        self.event_counts: dict[tuple[str, str, str], int] = defaultdict(int)
        #: The messages read into this batch, as the loader read them (to store them one
        #: by one if the batch as a whole cannot be stored).
        self.messages_read: list[Any] = []
        self.next_offsets: dict[tuple[str, int], int] = {}
        self.messages = 0
        self.rejected_by_topic: dict[str, int] = defaultdict(int)

    def __len__(self) -> int:
        """Messages covered, whether they became rows or were rejected."""
        return self.messages

    @property
    def events(self) -> int:
        """Raw event rows (a batch message holds many)."""
        return len(self.exposures) + len(self.outcomes)

    def _advance(self, topic: str, partition: int, offset: int) -> None:
        # Rows of one message (the events of a batch) share its offset: counted once.
        key = (topic, partition)
        if offset + 1 > self.next_offsets.get(key, 0):
            self.next_offsets[key] = offset + 1
            self.messages += 1

    def event_count_columns(self) -> Columns:
        """``event_counts`` rows of this batch, as columns."""
        keys = list(self.event_counts)
        return {
            "tenant_id": np.array([key[0] for key in keys], dtype=object),
            "experiment_key": np.array([key[1] for key in keys], dtype=object),
            "kind": np.array([key[2] for key in keys], dtype=object),
            "messages": np.array([self.event_counts[key] for key in keys], dtype=np.int64),
        }

    def add_exposure(self, topic: str, partition: int, offset: int, event: ExposureEvent) -> None:
        self.event_counts[(event.tenant_id, event.experiment_key, "exposure")] += 1
        self.exposures.rows.append(
            (
                *_envelope(event),
                event.experiment_key,
                event.variant_key,
                event.experiment_version,
                _json(event.attributes),
                partition,
                offset,
            )
        )
        self._advance(topic, partition, offset)

    def add_outcome(self, topic: str, partition: int, offset: int, event: OutcomeEvent) -> None:
        self.event_counts[(event.tenant_id, "", "outcome")] += 1
        self.outcomes.rows.append(
            (
                *_envelope(event),
                event.event,
                float(event.value),
                _json(event.properties),
                partition,
                offset,
            )
        )
        self._advance(topic, partition, offset)

    def add_aggregate(
        self,
        topic: str,
        partition: int,
        offset: int,
        record: Aggregate,
    ) -> None:
        updated_us = to_micros(record.updated_at)
        if isinstance(record, DefinitionError):
            self.definition_errors.rows.append(
                (
                    record.tenant_id,
                    record.experiment_key,
                    record.metric,
                    record.definition_hash,
                    record.stage,
                    record.reason,
                    updated_us,
                    offset,
                )
            )
        elif isinstance(record, VariantUnits):
            self.variant_units.rows.append(
                (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.source_partition,
                    record.units,
                    record.excluded_units,
                    updated_us,
                    offset,
                )
            )
        elif isinstance(record, MetricStats):
            self.metric_stats.rows.append(
                (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.event,
                    record.aggregation.value,
                    record.source_partition,
                    float(record.sum),
                    float(record.sum_sq),
                    updated_us,
                    offset,
                )
            )
        elif isinstance(record, MetricSums):
            self.metric_sums.rows.append(
                (
                    record.tenant_id,
                    record.experiment_key,
                    record.variant_key,
                    record.metric,
                    record.source_partition,
                    record.definition_hash,
                    record.n,
                    *(float(getattr(record, name)) for name in SUM_COLUMNS),
                    updated_us,
                    offset,
                )
            )
        else:
            self.stream_progress.rows.append(
                (record.source_partition, _json(record.next_offsets), updated_us, offset)
            )
        self._advance(topic, partition, offset)

    def add_control(self, topic: str, partition: int, offset: int, event: ControlEvent) -> None:
        """Every control event goes to the history; those defining an experiment also to
        ``experiment_definitions`` (the latest per tenant and key is the current one)."""
        self.control_events.rows.append(
            (
                str(event.event_id),
                event.type,
                event.tenant_id,
                event.subject,
                event.author,
                event.reason,
                to_micros(event.occurred_at),
                event.model_dump_json(),
                partition,
                offset,
            )
        )
        experiment = getattr(event, "experiment", None)
        if isinstance(experiment, Experiment):
            self.experiment_definitions.rows.append(
                (
                    str(event.event_id),
                    event.tenant_id,
                    experiment.key,
                    event.author,
                    event.reason,
                    to_micros(event.occurred_at),
                    experiment.version,
                    experiment.status,
                    experiment.model_dump_json(),
                    partition,
                    offset,
                )
            )
        self._advance(topic, partition, offset)

    def add_deadletter(
        self,
        topic: str,
        partition: int,
        offset: int,
        letter: DeadLetter,
        tenant_id: str | None = None,
    ) -> None:
        """``tenant_id``: the tenant the letter claims (None if it names none)."""
        self.deadletters.rows.append(
            (
                partition,
                offset,
                letter.stage,
                letter.source_topic,
                letter.source_partition,
                letter.source_offset,
                letter.reason,
                _json([error.model_dump() for error in letter.errors]),
                letter.payload,
                to_micros(letter.failed_at),
                tenant_id,
            )
        )
        self._advance(topic, partition, offset)

    def add_rejection(
        self,
        topic: str,
        partition: int,
        offset: int,
        reason: str,
        payload: str,
        tenant_id: str | None = None,
        subject: str | None = None,
    ) -> None:
        """A message that could not be parsed: recorded with its reason (and the tenant
        and subject it claims, if readable), not loaded."""
        self.rejections.rows.append((topic, partition, offset, reason, payload, tenant_id, subject))
        self.rejected_by_topic[topic] += 1
        self._advance(topic, partition, offset)

    def first_rejections(self) -> dict[str, tuple[int, int, str]]:
        """Topic -> (partition, offset, reason) of its first rejected message in the batch."""
        first: dict[str, tuple[int, int, str]] = {}
        for topic, partition, offset, reason, *_ in self.rejections.rows:
            first.setdefault(topic, (partition, offset, reason))
        return first

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """A message with nothing to load (a compaction tombstone): only move past it."""
        self._advance(topic, partition, offset)
