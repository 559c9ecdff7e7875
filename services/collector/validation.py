"""Validating a batch event by event: what is accepted, and why each refused event was refused.

Pure (no I/O): the caller passes the key's tenant, the current time and the limits.

- ``tenant_id`` may be omitted: it is filled from the API key. When present it must be
  the key's tenant, else the event is refused (field ``tenant_id``).
- ``received_at`` is always set to the collector's clock (a client's value is replaced).
- An event larger than ``max_event_bytes`` as JSON, or whose ``timestamp`` is more than
  ``max_future_s`` ahead or ``max_past_s`` behind the clock, is refused (field ``timestamp``).
- Anything ``schemas.events`` refuses is refused with pydantic's field path and message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.deadletter import FieldError, field_errors
from schemas.events import ExposureEvent, OutcomeEvent, parse_event, unit_partition_key
from services.collector.config import CollectorConfig

Event = ExposureEvent | OutcomeEvent


@dataclass(frozen=True)
class AcceptedEvent:
    index: int
    event: Event


@dataclass(frozen=True)
class RejectedEvent:
    index: int
    errors: list[FieldError]
    #: Low-cardinality label for the rejection metric.
    code: str
    #: The event as sent (JSON, cut to ``max_event_bytes``), for the dead letter.
    payload: str
    #: ``tenant:unit`` when the event names a unit, else None.
    key: bytes | None


@dataclass(frozen=True)
class BatchVerdict:
    accepted: list[AcceptedEvent]
    rejected: list[RejectedEvent]


def _payload(item: Any, limit: int) -> str:
    """The event as sent, cut to ``limit`` characters so a dead letter always fits Kafka."""
    try:
        text = orjson.dumps(item).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(item)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... (truncated: {len(text)} characters)"


def _key(tenant_id: str, item: Any) -> bytes | None:
    unit = item.get("unit_id") if isinstance(item, dict) else None
    return unit_partition_key(tenant_id, unit) if isinstance(unit, str) and unit else None


def validate_event(
    index: int, item: Any, tenant_id: str, now: datetime, config: CollectorConfig
) -> AcceptedEvent | RejectedEvent:
    """One raw event checked against the contract and the limits; ``now`` is aware UTC."""

    def refuse(code: str, errors: list[FieldError]) -> RejectedEvent:
        payload = _payload(item, config.max_event_bytes)
        return RejectedEvent(index, errors, code, payload, _key(tenant_id, item))

    if not isinstance(item, dict):
        return refuse(
            "not_object",
            [
                FieldError(
                    field="", reason=f"an event must be a JSON object, not {_json_type(item)}"
                )
            ],
        )
    claimed = item.get("tenant_id")
    if claimed is not None and claimed != tenant_id:
        return refuse(
            "tenant_mismatch",
            [
                FieldError(
                    field="tenant_id",
                    reason=f"the API key belongs to tenant '{tenant_id}', not {claimed!r}",
                )
            ],
        )
    # Stamped before parsing (cheaper than a copy of the model after): a client's
    # received_at is replaced, never checked.
    raw = orjson.dumps({**item, "tenant_id": tenant_id, "received_at": now})
    if len(raw) > config.max_event_bytes:
        return refuse(
            "event_too_large",
            [
                FieldError(
                    field="",
                    reason=f"the event is {len(raw)} bytes as JSON; "
                    f"the limit is {config.max_event_bytes}",
                )
            ],
        )
    try:
        event = parse_event(raw)
    except ValidationError as error:
        return refuse("invalid", field_errors(error))
    if event.timestamp > now + timedelta(seconds=config.max_future_s):
        return refuse(
            "timestamp_future",
            [
                FieldError(
                    field="timestamp",
                    reason=f"{event.timestamp.isoformat()} is more than "
                    f"{config.max_future_s:g}s ahead of the collector's clock ({now.isoformat()})",
                )
            ],
        )
    if event.timestamp < now - timedelta(seconds=config.max_past_s):
        return refuse(
            "timestamp_past",
            [
                FieldError(
                    field="timestamp",
                    reason=f"{event.timestamp.isoformat()} is more than "
                    f"{config.max_past_s:g}s before the collector's clock ({now.isoformat()})",
                )
            ],
        )
    return AcceptedEvent(index, event)


def batch_verdict(verdicts: Iterable[AcceptedEvent | RejectedEvent]) -> BatchVerdict:
    """The per-event verdicts of a batch, split into accepted and refused (in order)."""
    accepted: list[AcceptedEvent] = []
    rejected: list[RejectedEvent] = []
    for verdict in verdicts:
        if isinstance(verdict, AcceptedEvent):
            accepted.append(verdict)
        else:
            rejected.append(verdict)
    return BatchVerdict(accepted, rejected)


def validate_batch(
    items: list[Any], tenant_id: str, now: datetime, config: CollectorConfig
) -> BatchVerdict:
    return batch_verdict(
        validate_event(index, item, tenant_id, now, config) for index, item in enumerate(items)
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
