"""Exposure and outcome events: the raw log that every figure is computed from.

Every event carries the envelope (``event_id`` as idempotency key, ``tenant_id``,
``unit_id``, event-time ``timestamp`` in UTC, ``received_at`` set by the platform,
``schema_version``). On Kafka an event is one JSON object, keyed ``tenant:unit`` so
that a unit's exposures and outcomes land on the same partition of their topics.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
)

from schemas.identifiers import EventName, Key, TenantId, UnitId

SCHEMA_VERSION: Final = 1

AttributeValue = str | int | float | bool | None


def _new_event_id() -> uuid.UUID:
    return uuid.uuid4()


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class EventEnvelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(default_factory=_new_event_id)
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
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


class OutcomeEvent(EventEnvelope):
    """A unit did something a metric may count (a purchase, a click, an error)."""

    type: Literal["outcome"] = "outcome"
    event: EventName
    value: float = 1.0
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


Event = Annotated[ExposureEvent | OutcomeEvent, Field(discriminator="type")]
_event_adapter: TypeAdapter[ExposureEvent | OutcomeEvent] = TypeAdapter(Event)


def parse_event(payload: bytes | str) -> ExposureEvent | OutcomeEvent:
    """Validate one JSON event; raises ``pydantic.ValidationError`` naming the field."""
    return _event_adapter.validate_json(payload)


def unit_partition_key(tenant_id: str, unit_id: str) -> bytes:
    return f"{tenant_id}:{unit_id}".encode()
