"""Turn one message from the exposures or outcomes topic into an event, or a dead letter.

A message is accepted when its value is one JSON event (``schemas.events``) of the
topic's type and its key is the event's ``tenant:unit``: the key decides the partition,
and a unit's state must live on the partition its events arrive on. Anything else
becomes a ``DeadLetter`` naming the field(s) and the reason, with the payload as
received; it never raises.

Validating with pydantic costs ~13 µs an event, more than everything else the worker
does. ``decode_event`` therefore first decodes with msgspec against a mirror of the
contract (a few µs); only when msgspec refuses a payload, or accepts it in a form
pydantic might read differently (a naive timestamp), does ``schemas.events.parse_event``
decide, so what is accepted, and every error message, is exactly the contract's
(``tests/unit/test_stream_intake.py`` checks the two agree on generated payloads).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, Protocol

import msgspec
from msgspec import Meta
from pydantic import ValidationError

from schemas.deadletter import DeadLetter, FieldError, describe, field_errors
from schemas.events import SCHEMA_VERSION, ExposureEvent, OutcomeEvent, parse_event
from services.stream.attribution import to_micros

STAGE = "stream"
EventType = Literal["exposure", "outcome"]
_UNION_TAGS = ("exposure.", "outcome.")

# The contract of schemas.events, for msgspec: the same fields and constraints. The
# patterns of keys, tenant ids and event names are checked after decoding, against the
# values already seen valid (they repeat in nearly every event; a regular expression in
# the decoder costs more than the rest of the decoding). ``\Z``, not ``$``, which in
# Python also matches before a final newline.
_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}\Z")
_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_UnitId = Annotated[str, Meta(min_length=1, max_length=256)]
_Scalar = str | int | float | bool | None


class _Exposure(msgspec.Struct, tag_field="type", tag="exposure", forbid_unknown_fields=True):
    event_id: uuid.UUID
    tenant_id: str
    unit_id: _UnitId
    timestamp: datetime
    experiment_key: str
    variant_key: str
    received_at: datetime | None = None
    schema_version: Literal[1] = SCHEMA_VERSION
    experiment_version: Annotated[int, Meta(ge=1)] = 1
    attributes: dict[str, _Scalar] = {}


class _Outcome(msgspec.Struct, tag_field="type", tag="outcome", forbid_unknown_fields=True):
    event_id: uuid.UUID
    tenant_id: str
    unit_id: _UnitId
    timestamp: datetime
    event: str
    value: float = 1.0
    received_at: datetime | None = None
    schema_version: Literal[1] = SCHEMA_VERSION
    properties: dict[str, Any] = {}


_decoder = msgspec.json.Decoder(_Exposure | _Outcome)


class KafkaMessage(Protocol):
    """What the stream reads of a consumed message (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class SourceMessage(NamedTuple):
    """One consumed Kafka message, built by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class StreamEvent(NamedTuple):
    """What attribution needs of one valid event (``experiment``/``variant`` or
    ``event``/``value``, by ``type``). A tuple: built for every event, it must be cheap."""

    type: EventType
    key: bytes
    tenant_id: str
    event_id: int  # the UUID's 128 bits
    timestamp_us: int
    experiment: str = ""
    variant: str = ""
    event: str = ""
    value: float = 0.0


def decode_event(message: KafkaMessage, expected_type: EventType) -> StreamEvent | DeadLetter:
    """The validated event, or a dead letter saying which field is wrong and why."""
    if message.value is None:
        return _dead_letter(message, [FieldError(field="", reason="empty message (no value)")])
    event = _fast_decode(message.value)
    if event is None:
        try:
            event = _from_model(parse_event(message.value))
        except ValidationError as error:
            return _dead_letter(message, [_without_union_tag(e) for e in field_errors(error)])
    if event.type != expected_type:
        reason = f"a {event.type} event on the {expected_type}s topic ({message.topic})"
        return _dead_letter(message, [FieldError(field="type", reason=reason)])
    if message.key != event.key:
        shown = "none" if message.key is None else repr(message.key.decode(errors="replace"))
        reason = (
            f"message key {shown} is not tenant_id:unit_id "
            f"{event.key.decode()!r}, so the unit's events would be split across partitions"
        )
        return _dead_letter(message, [FieldError(field="key", reason=reason)])
    return event


def _fast_decode(payload: bytes) -> StreamEvent | None:
    """The event if msgspec finds ``payload`` valid and unambiguous, else None."""
    try:
        event = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    timestamp = event.timestamp
    if timestamp.tzinfo is None or (
        event.received_at is not None and event.received_at.tzinfo is None
    ):
        return None
    tenant = event.tenant_id
    if tenant not in _valid_tenants and not _remember(_valid_tenants, _TENANT_ID, tenant):
        return None
    key = f"{tenant}:{event.unit_id}".encode()
    if type(event) is _Exposure:
        experiment, variant = event.experiment_key, event.variant_key
        if (experiment not in _valid_keys and not _remember(_valid_keys, _KEY, experiment)) or (
            variant not in _valid_keys and not _remember(_valid_keys, _KEY, variant)
        ):
            return None
        return StreamEvent(
            "exposure",
            key,
            tenant,
            event.event_id.int,
            to_micros(timestamp),
            experiment,
            variant,
        )
    value = event.value
    name = event.event
    if not math.isfinite(value) or (
        name not in _valid_names and not _remember(_valid_names, _EVENT_NAME, name)
    ):
        return None
    return StreamEvent(
        "outcome",
        key,
        tenant,
        event.event_id.int,
        to_micros(timestamp),
        "",
        "",
        name,
        value,
    )


_valid_tenants: set[str] = set()
_valid_keys: set[str] = set()
_valid_names: set[str] = set()
_REMEMBERED_MAX = 100_000


def _remember(valid: set[str], pattern: re.Pattern[str], value: str) -> bool:
    """Check ``value`` against ``pattern``; remember it (boundedly) if it matches."""
    if not pattern.match(value):
        return False
    if len(valid) >= _REMEMBERED_MAX:
        valid.clear()
    valid.add(value)
    return True


def _from_model(event: ExposureEvent | OutcomeEvent) -> StreamEvent:
    common = (
        event.partition_key,
        event.tenant_id,
        event.event_id.int,
        to_micros(event.timestamp),
    )
    if isinstance(event, ExposureEvent):
        return StreamEvent(
            "exposure", *common, experiment=event.experiment_key, variant=event.variant_key
        )
    return StreamEvent("outcome", *common, event=event.event, value=event.value)


def internal_error(message: KafkaMessage, error: Exception) -> DeadLetter:
    """A dead letter for a message the worker failed on (a bug, not bad input)."""
    reason = f"stream worker error: {type(error).__name__}: {error}"
    return _dead_letter(message, [FieldError(field="", reason=reason)])


def _without_union_tag(error: FieldError) -> FieldError:
    # pydantic prefixes fields of a discriminated union with the tag ("outcome.value").
    for tag in _UNION_TAGS:
        if error.field.startswith(tag):
            return FieldError(field=error.field.removeprefix(tag), reason=error.reason)
    return error


def _dead_letter(message: KafkaMessage, errors: list[FieldError]) -> DeadLetter:
    return DeadLetter(
        stage=STAGE,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        reason=" ".join(describe(errors).split()),
        errors=errors,
        payload=(message.value or b"").decode("utf-8", errors="replace"),
    )
