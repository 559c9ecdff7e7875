"""Turn one message from the exposures or outcomes topic into an event, or a dead letter.

A message is accepted when its value is one JSON event (``schemas.events.parse_event``)
of the topic's type and its key is the event's ``tenant:unit``: the key decides the
partition, and a unit's state must live on the partition its events arrive on. Anything
else becomes a ``DeadLetter`` naming the field(s) and the reason, with the payload as
received; it never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from schemas.deadletter import DeadLetter, FieldError, describe, field_errors
from schemas.events import ExposureEvent, OutcomeEvent, parse_event

STAGE = "stream"
EventType = Literal["exposure", "outcome"]
_UNION_TAGS = ("exposure.", "outcome.")


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One consumed Kafka message, as the stream sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def decode_event(
    message: SourceMessage, expected_type: EventType
) -> ExposureEvent | OutcomeEvent | DeadLetter:
    """The validated event, or a dead letter saying which field is wrong and why."""
    if message.value is None:
        return _dead_letter(message, [FieldError(field="", reason="empty message (no value)")])
    try:
        event = parse_event(message.value)
    except ValidationError as error:
        return _dead_letter(message, [_without_union_tag(e) for e in field_errors(error)])
    if event.type != expected_type:
        reason = f"a {event.type} event on the {expected_type}s topic ({message.topic})"
        return _dead_letter(message, [FieldError(field="type", reason=reason)])
    expected_key = event.partition_key
    if message.key != expected_key:
        shown = "none" if message.key is None else repr(message.key.decode(errors="replace"))
        reason = (
            f"message key {shown} is not tenant_id:unit_id "
            f"{expected_key.decode()!r}, so the unit's events would be split across partitions"
        )
        return _dead_letter(message, [FieldError(field="key", reason=reason)])
    return event


def internal_error(message: SourceMessage, error: Exception) -> DeadLetter:
    """A dead letter for a message the worker failed on (a bug, not bad input)."""
    reason = f"stream worker error: {type(error).__name__}: {error}"
    return _dead_letter(message, [FieldError(field="", reason=reason)])


def _without_union_tag(error: FieldError) -> FieldError:
    # pydantic prefixes fields of a discriminated union with the tag ("outcome.value").
    for tag in _UNION_TAGS:
        if error.field.startswith(tag):
            return FieldError(field=error.field.removeprefix(tag), reason=error.reason)
    return error


def _dead_letter(message: SourceMessage, errors: list[FieldError]) -> DeadLetter:
    return DeadLetter(
        stage=STAGE,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        reason=" ".join(describe(errors).split()),
        errors=errors,
        payload=(message.value or b"").decode("utf-8", errors="replace"),
    )
