"""Validating a batch event by event: what is accepted, and why each refused event was refused.

Pure (no I/O): the caller passes the key's tenant, the current time and the limits.

- ``tenant_id`` may be omitted: it is filled from the API key. When present it must be
  the key's tenant, else the event is refused (field ``tenant_id``).
- ``received_at`` is always set to the collector's clock (a client's value is replaced).
- ``event_id`` may be omitted: the model derives it from the event's content
  (``schemas.events``), so a retry of the same event has the same id.
- A field nested deeper than ``MAX_JSON_DEPTH`` is refused naming it, before anything
  serialises the event (a very deep value must cost no recursion).
- An event larger than ``max_event_bytes`` as JSON is refused naming its largest field.
- An event whose ``timestamp`` is more than ``max_future_s`` ahead or ``max_past_s``
  behind the clock is refused (field ``timestamp``); an import passes its own limit
  behind (``MAX_IMPORT_AGE_DAYS``) instead of the live one.
- Anything ``schemas.events`` refuses is refused with pydantic's field path and message.

Every refusal is bounded (``schemas.deadletter``): a client's value is quoted, never
copied whole; the errors, the payload excerpt and the key of its dead letter are capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, overload

import orjson
from pydantic import ValidationError

from schemas.deadletter import bounded_errors, dead_letter_key, payload_excerpt
from schemas.errors import FieldError
from schemas.events import (
    ExposureEvent,
    OutcomeEvent,
    event_errors,
    parse_event,
)
from schemas.limits import MAX_JSON_DEPTH, json_depth, quote
from schemas.partitioning import unit_partition_key
from services.collector.config import CollectorConfig
from services.collector.fast_path import FastEvent, FastExposure, fast_event

Event = ExposureEvent | OutcomeEvent


class AcceptedEvent(NamedTuple):
    """An accepted event and its place in the batch (a tuple: a batch makes hundreds)."""

    index: int
    #: The contract's model, or the fast path's struct with the same fields
    #: (``type``, ``partition_key``, ``to_json()``...).
    event: Event | FastEvent


@dataclass(frozen=True)
class RejectedEvent:
    index: int
    errors: list[FieldError]
    #: Low-cardinality label for the rejection metric.
    code: str
    #: The event as sent (JSON; the dead letter cuts it), for the dead letter.
    payload: str
    #: ``tenant:unit`` when the event names a unit (bounded: ``dead_letter_key``), else None.
    key: bytes | None


class AllAccepted(Sequence[AcceptedEvent]):
    """Every event of a batch accepted (the fast path's usual verdict): the events
    themselves, an ``AcceptedEvent`` made only when one is read (a batch makes hundreds)."""

    __slots__ = ("events",)

    def __init__(self, events: list[FastEvent]) -> None:
        self.events = events

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> AcceptedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[AcceptedEvent]: ...

    def __getitem__(self, index: int | slice) -> AcceptedEvent | list[AcceptedEvent]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self.events))[index]]
        if index < 0:
            index += len(self.events)
        return AcceptedEvent(index, self.events[index])

    def __iter__(self) -> Iterator[AcceptedEvent]:
        return map(AcceptedEvent, range(len(self.events)), self.events)


@dataclass(frozen=True)
class BatchVerdict:
    accepted: Sequence[AcceptedEvent]
    rejected: list[RejectedEvent]


def exposures_of(accepted: Sequence[AcceptedEvent]) -> list[AcceptedEvent]:
    """The accepted exposures (outcomes, most events, are not looked at one by one)."""
    if isinstance(accepted, AllAccepted):
        events = accepted.events
        return [
            AcceptedEvent(i, event) for i, event in enumerate(events) if type(event) is FastExposure
        ]
    return [item for item in accepted if item.event.type == "exposure"]


def _key(tenant_id: str, item: Any) -> bytes | None:
    unit = item.get("unit_id") if isinstance(item, dict) else None
    if not isinstance(unit, str) or not unit:
        return None
    return dead_letter_key(unit_partition_key(tenant_id, unit))


def _too_deep(item: dict[str, Any]) -> str | None:
    """The first field nested deeper than ``MAX_JSON_DEPTH``, if any."""
    for name, value in item.items():
        if isinstance(value, dict | list) and json_depth(value) > MAX_JSON_DEPTH:
            return name
    return None


def _largest_field(item: dict[str, Any]) -> tuple[str, int]:
    sizes = {name: len(orjson.dumps(value)) for name, value in item.items()}
    name = max(sizes, key=sizes.__getitem__, default="")
    return name, sizes.get(name, 0)


def validate_event(
    index: int,
    item: Any,
    tenant_id: str,
    now: datetime,
    config: CollectorConfig,
    *,
    max_past_s: float | None = None,
) -> AcceptedEvent | RejectedEvent:
    """One raw event checked against the contract and the limits; ``now`` is aware UTC.
    ``max_past_s`` (an import's) replaces ``config.max_past_s``. Ordinary events take
    msgspec's fast path (``fast_path``); pydantic decides the rest."""
    past_limit_s = config.max_past_s if max_past_s is None else max_past_s
    fast = fast_event(item, tenant_id, now, config, past_limit_s)
    if fast is not None:
        return AcceptedEvent(index, fast)
    return validate_slowly(index, item, tenant_id, now, config, past_limit_s)


def validate_slowly(
    index: int,
    item: Any,
    tenant_id: str,
    now: datetime,
    config: CollectorConfig,
    past_limit_s: float,
) -> AcceptedEvent | RejectedEvent:
    """``validate_event`` through pydantic alone (what the fast path must agree with)."""

    def refuse(code: str, errors: list[FieldError]) -> RejectedEvent:
        return RejectedEvent(
            index, bounded_errors(errors), code, payload_excerpt(item), _key(tenant_id, item)
        )

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
                    reason=f"the API key belongs to tenant '{tenant_id}', not {quote(claimed)}",
                )
            ],
        )
    deep = _too_deep(item)
    if deep is not None:
        return refuse(
            "too_deep",
            [FieldError(field=deep, reason=f"nested deeper than {MAX_JSON_DEPTH} levels")],
        )
    # Stamped before parsing (cheaper than a copy of the model after): a client's
    # received_at is replaced, never checked.
    raw = orjson.dumps({**item, "tenant_id": tenant_id, "received_at": now})
    if len(raw) > config.max_event_bytes:
        name, size = _largest_field(item)
        return refuse(
            "event_too_large",
            [
                FieldError(
                    field=name,
                    reason=f"the event is {len(raw)} bytes as JSON, the limit is "
                    f"{config.max_event_bytes}; this field is {size} bytes of it",
                )
            ],
        )
    try:
        event = parse_event(raw)
    except ValidationError as error:
        return refuse("invalid", event_errors(error))
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
    if event.timestamp < now - timedelta(seconds=past_limit_s):
        return refuse(
            "timestamp_past",
            [
                FieldError(
                    field="timestamp",
                    reason=f"{event.timestamp.isoformat()} is more than "
                    f"{past_limit_s:g}s before the collector's clock ({now.isoformat()})",
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
