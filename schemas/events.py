"""Exposure and outcome events: the raw log that every figure is computed from.

Every event carries the envelope (``event_id`` as idempotency key, ``tenant_id``,
``unit_id``, event-time ``timestamp`` in UTC, ``received_at`` set by the platform,
``schema_version``).

On Kafka a message of an event topic is one event or a batch of events:

- one event: a JSON object, keyed ``tenant:unit`` (any Kafka client's default
  partitioner then puts a unit's exposures and outcomes on the same partition number);
- a batch (``EventBatch``): a JSON array of 1 to ``MAX_BATCH_EVENTS`` events that all
  belong to the message's partition, i.e. the partition Kafka's default partitioner gives
  their ``tenant:unit`` (``schemas.partitioning``); the message key does not matter.
  The platform's producers send batches: the stream's cost is per message.

``event_id`` may be omitted: the event then gets a content-derived id, uuid5 in
``EVENT_ID_NAMESPACE`` of its canonical JSON (every field but ``event_id`` and
``received_at``, normalised by the model, keys sorted; the tenant is one of them). A client
that re-sends the same event without an id (a retry after a lost answer) sends the same id,
and everything downstream de-duplicates it. The price: two events identical in every field
(same unit, name, value, properties and timestamp to the microsecond) are one event; a
client that means them as two gives them ids. The SDK gives every event a random id.

``properties`` and ``attributes`` are bounded (``schemas.limits``): depth, size, number of
keys, key length and string length.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from schemas.errors import FieldError, field_errors
from schemas.identifiers import EventName, Key, TenantId, UnitId
from schemas.limits import MAX_BATCH_EVENTS, MAX_OUTCOME_VALUE, check_properties
from schemas.partitioning import unit_partition_key

SCHEMA_VERSION: Final = 1
#: The namespace of content-derived event ids. Fixed forever: changing it changes the id
#: of every event sent without one, and a retry would be counted twice.
EVENT_ID_NAMESPACE: Final = uuid.UUID("5d0c1f8e-7a44-5b7e-9b53-6c1e0b7a2f10")
#: Placeholder until the model derives the id from the content.
_UNSET_ID: Final = uuid.UUID(int=0)

AttributeValue = str | int | float | bool | None
#: An event's free-form values, bounded in depth, size, keys and string lengths.
Properties = Annotated[dict[str, Any], AfterValidator(check_properties)]
Attributes = Annotated[dict[str, AttributeValue], AfterValidator(check_properties)]


def _unset_event_id() -> uuid.UUID:
    return _UNSET_ID


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class EventEnvelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(
        default_factory=_unset_event_id,
        description="Idempotency key. Omitted: uuid5 of the event's canonical content.",
    )
    tenant_id: TenantId
    unit_id: UnitId
    timestamp: AwareDatetime = Field(description="When it happened (event time), with a zone.")
    received_at: AwareDatetime | None = Field(
        default=None, description="When the platform received it; set by the platform."
    )
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("timestamp", "received_at")
    @classmethod
    def _normalise_to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _to_utc(value)

    @model_validator(mode="after")
    def _content_event_id(self) -> Self:
        if "event_id" not in self.model_fields_set:
            # Frozen model: set once, here, before anyone sees it; marked as given so a
            # copy or a reader keeps it.
            object.__setattr__(self, "event_id", content_event_id(self))
            self.model_fields_set.add("event_id")
        return self

    @field_serializer("event_id")
    def _serialise_event_id(self, value: uuid.UUID) -> str:
        return str(value)

    @property
    def partition_key(self) -> bytes:
        """The Kafka key: ``tenant:unit``, so a unit's events are co-partitioned."""
        return unit_partition_key(self.tenant_id, self.unit_id)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class ExposureEvent(EventEnvelope):
    """A unit was shown a variant of an experiment."""

    type: Literal["exposure"] = "exposure"
    experiment_key: Key
    variant_key: Key
    experiment_version: int = Field(default=1, ge=1)
    attributes: Attributes = Field(default_factory=dict)


class OutcomeEvent(EventEnvelope):
    """A unit did something a metric may count (a purchase, a click, an error)."""

    type: Literal["outcome"] = "outcome"
    event: EventName
    value: float = 1.0
    properties: Properties = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        if abs(value) > MAX_OUTCOME_VALUE:
            raise ValueError(
                f"value must be between -{MAX_OUTCOME_VALUE:g} and {MAX_OUTCOME_VALUE:g}"
            )
        return value


Event = Annotated[ExposureEvent | OutcomeEvent, Field(discriminator="type")]
#: The tags of ``Event``, which pydantic puts in error locations (``outcome.value``).
EVENT_TYPES: Final = ("exposure", "outcome")
_event_adapter: TypeAdapter[ExposureEvent | OutcomeEvent] = TypeAdapter(Event)


def parse_event(payload: bytes | str) -> ExposureEvent | OutcomeEvent:
    """Validate one JSON event; raises ``pydantic.ValidationError`` naming the field."""
    return _event_adapter.validate_json(payload)


#: A message holding several events: a JSON array of events of one partition.
EventBatch = Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
_batch_adapter: TypeAdapter[list[ExposureEvent | OutcomeEvent]] = TypeAdapter(EventBatch)


def parse_event_batch(payload: bytes | str) -> list[ExposureEvent | OutcomeEvent]:
    """Validate a whole batch; raises ``pydantic.ValidationError`` naming index and field.
    Readers that keep the good elements of a bad batch validate element by element."""
    return _batch_adapter.validate_json(payload)


def parse_event_message(payload: bytes) -> list[ExposureEvent | OutcomeEvent]:
    """The events of one message of an event topic, one or a batch; raises
    ``pydantic.ValidationError`` (readers keeping a bad batch's good elements validate
    element by element)."""
    return parse_event_batch(payload) if is_batch(payload) else [parse_event(payload)]


def event_errors(error: ValidationError) -> list[FieldError]:
    """The field errors of an event (or batch) pydantic refused, worded as the SDK, the
    collector and the stream all word them (``schemas.errors``; no union tags)."""
    return field_errors(error, union_tags=EVENT_TYPES)


def is_batch(payload: bytes) -> bool:
    """Whether a message of an event topic is a batch (a JSON array), not one event."""
    return payload.lstrip()[:1] == b"["


def content_event_id(event: EventEnvelope) -> uuid.UUID:
    """uuid5 of the event's canonical JSON: every field but ``event_id`` and
    ``received_at``, as the model serialises them, keys sorted."""
    content = event.model_dump(mode="json", exclude={"event_id", "received_at"})
    return uuid.uuid5(
        EVENT_ID_NAMESPACE, orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()
    )
