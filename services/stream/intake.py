"""Turn one message from the exposures or outcomes topic into events, or dead letters.

A message holds one event or a batch (``schemas.events``). One event (a JSON object) is
accepted when it is of the topic's type and the message's key is its ``tenant:unit``:
the key decides the partition, and a unit's state must live on the partition its events
arrive on. A batch (a JSON array) is accepted element by element: each must be of the
topic's type and belong, by Kafka's default partitioner of its ``tenant:unit``
(``schemas.partitioning``), to the partition the batch arrived on. Anything else becomes
a ``DeadLetter`` naming the field(s), the reason and, for an element of a batch, its
index, with the payload as received; the rest of a batch goes on. It never raises.

Validating with pydantic costs ~13 µs an event, more than everything else the worker
does. ``decode_event`` therefore first decodes with msgspec against a mirror of the
contract (a few µs); only when msgspec refuses a payload, or accepts it in a form
pydantic might read differently (a naive timestamp), does ``schemas.events.parse_event``
decide, so what is accepted, and every error message, is exactly the contract's
(``tests/unit/test_stream_intake.py`` checks the two agree on generated payloads).
``decode_events`` does the same for consecutive messages: msgspec decodes them as one
JSON array (a third cheaper per event than one call each), and a slice holding a bad
message is decided message by message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple, Protocol

import msgspec
from msgspec.structs import astuple
from pydantic import ValidationError

from analytics.attribution.rule import to_micros
from schemas.deadletter import DeadLetter
from schemas.errors import FieldError, describe
from schemas.events import (
    ExposureEvent,
    OutcomeEvent,
    event_errors,
    is_batch,
    parse_event,
    parse_event_batch,
)
from schemas.limits import MAX_BATCH_EVENTS, check_properties
from schemas.partitioning import partition_for
from services.stream.wire import ARRAY_DECODER, DECODER, RAW_ARRAY_DECODER, Exposure, Outcome

STAGE: Final = "stream"
EventType = Literal["exposure", "outcome"]

# ``wire`` mirrors the contract of schemas.events for msgspec. The patterns of keys,
# tenant ids and event names are checked after decoding, against the values already seen
# valid (they repeat in nearly every event; a regular expression in
# the decoder costs more than the rest of the decoding). ``\Z``, not ``$``, which in
# Python also matches before a final newline.
_KEY: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}\Z")
_TENANT_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
_EVENT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
#: Messages decoded per msgspec call by ``decode_events``; a slice with a bad message
#: falls back to one call per message, so a bad message costs at most this many.
DECODE_SLICE: Final = 256


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


def decode_events(
    messages: Sequence[KafkaMessage], expected_type: EventType, partitions: int
) -> tuple[list[StreamEvent | DeadLetter], list[int]]:
    """``decode_message`` of each message (consecutive messages of one topic, which has
    ``partitions`` partitions), flattened: the results in order, and for each the index
    in ``messages`` of the message it came from."""
    decoded: list[StreamEvent | DeadLetter] = []
    origins: list[int] = []
    for start in range(0, len(messages), DECODE_SLICE):
        part = messages[start : start + DECODE_SLICE]
        structs = _decode_slice([message.value for message in part])
        if structs is None:
            for index in range(len(part)):
                results = decode_message(part[index], expected_type, partitions)
                decoded.extend(results)
                origins.extend([start + index] * len(results))
            continue
        for index in range(len(part)):
            message = part[index]
            event = _accepted(structs[index])
            if event is None or event.type != expected_type or event.key != message.key:
                decoded.append(decode_event(message, expected_type))
            else:
                decoded.append(event)
            origins.append(start + index)
    return decoded, origins


def decode_message(
    message: KafkaMessage, expected_type: EventType, partitions: int
) -> list[StreamEvent | DeadLetter]:
    """The events of one message, or dead letters: one event (a JSON object, keyed
    ``tenant:unit``) or a batch (a JSON array of events of the message's partition of a
    topic with ``partitions`` partitions, whatever its key). A bad element of a batch is
    its own dead letter, naming its index; the others are accepted."""
    value = message.value
    if value is None or not is_batch(value):
        return [decode_event(message, expected_type)]
    try:
        structs: list[Exposure | Outcome] | None = ARRAY_DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        structs = None
    if structs is not None:
        if not structs or len(structs) > MAX_BATCH_EVENTS:
            return [_batch_size_letter(message, len(structs))]
        results: list[StreamEvent | DeadLetter] = []
        raw: list[msgspec.Raw] | None = None
        for index in range(len(structs)):
            event = _accepted(structs[index])
            if (
                event is None
                or event.type != expected_type
                or partition_for(event.key, partitions) != message.partition
            ):
                # Decided again from the element's own text, which its dead letter keeps.
                if raw is None:
                    raw = RAW_ARRAY_DECODER.decode(value)
                element = bytes(raw[index])
                results.append(_decode_element(message, index, element, expected_type, partitions))
            else:
                results.append(event)
        return results
    try:
        elements = RAW_ARRAY_DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        try:
            parse_event_batch(value)
        except ValidationError as error:
            return [_dead_letter(message, event_errors(error))]
        reason = "not a JSON array of events"  # pragma: no cover - pydantic refuses it too
        return [_dead_letter(message, [FieldError(field="", reason=reason)])]
    if not elements or len(elements) > MAX_BATCH_EVENTS:
        return [_batch_size_letter(message, len(elements))]
    return [
        _decode_element(message, index, bytes(elements[index]), expected_type, partitions)
        for index in range(len(elements))
    ]


def _decode_element(
    message: KafkaMessage, index: int, element: bytes, expected_type: EventType, partitions: int
) -> StreamEvent | DeadLetter:
    """Element ``index`` of a batch message: the event, or its own dead letter."""
    event = _fast_decode(element)
    if event is None:
        try:
            event = _from_model(parse_event(element))
        except ValidationError as error:
            errors = event_errors(error)
            return _element_letter(message, index, element, errors)
    if event.type != expected_type:
        reason = f"a {event.type} event on the {expected_type}s topic ({message.topic})"
        return _element_letter(message, index, element, [FieldError(field="type", reason=reason)])
    belongs = partition_for(event.key, partitions)
    if belongs != message.partition:
        reason = (
            f"tenant_id:unit_id {event.key.decode()!r} belongs to partition {belongs} of "
            f"{partitions}, not {message.partition} where the batch arrived, so the unit's "
            "events would be split across partitions"
        )
        return _element_letter(message, index, element, [FieldError(field="key", reason=reason)])
    return event


def _decode_slice(values: list[bytes | None]) -> list[Exposure | Outcome] | None:
    """The structs of ``values`` decoded as one JSON array, one per value; None unless
    every value is one JSON object msgspec accepts.

    Each value then yields exactly one element: the separator holds a raw newline, which
    no JSON string may contain, so no string spans two values; after the separator's
    comma the next value starts, and inside an object a key must follow, so only an
    array could span two values, and a value with a ``[`` is decoded on its own.
    """
    if None in values:
        return None
    joined = b"\n,".join(values)  # type: ignore[arg-type]
    if b"[" in joined:
        return None
    try:
        structs = ARRAY_DECODER.decode(b"[" + joined + b"]")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    # A value holding several comma-separated objects adds elements.
    return structs if len(structs) == len(values) else None


def decode_event(message: KafkaMessage, expected_type: EventType) -> StreamEvent | DeadLetter:
    """The validated event, or a dead letter saying which field is wrong and why."""
    if message.value is None:
        return _dead_letter(message, [FieldError(field="", reason="empty message (no value)")])
    event = _fast_decode(message.value)
    if event is None:
        try:
            event = _from_model(parse_event(message.value))
        except ValidationError as error:
            return _dead_letter(message, event_errors(error))
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
        return _accepted(DECODER.decode(payload))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _accepted(event: Exposure | Outcome) -> StreamEvent | None:
    """The event of a struct msgspec decoded, if it is valid and unambiguous.

    Events are built with tuple.__new__, in C, not the NamedTuple's generated Python
    __new__ (a third of a µs an event where this module runs interpreted)."""
    # One call reads every field (by position: ``wire``'s field order); reading them as
    # attributes costs more, compiled, than all the checks below.
    fields = astuple(event)
    timestamp: datetime = fields[3]
    received_at: datetime | None = fields[6]
    if timestamp.tzinfo is None or (received_at is not None and received_at.tzinfo is None):
        return None
    tenant = _valid_tenants.get(fields[1]) or _remember(_valid_tenants, _TENANT_ID, fields[1])
    if tenant is None:
        return None
    key = f"{tenant}:{fields[2]}".encode()
    event_id: int = fields[0].int
    micros = to_micros(timestamp)
    # A non-empty free-form map is bounded like the contract bounds it (depth, keys,
    # sizes): one that is not is left to pydantic, which refuses it as the results loader
    # does, so the stream and the raw log never disagree about an event.
    extra = fields[9] if isinstance(event, Exposure) else fields[8]
    if isinstance(extra, dict) and extra and not _bounded(extra):
        return None
    if isinstance(event, Exposure):
        experiment = _valid_keys.get(fields[4]) or _remember(_valid_keys, _KEY, fields[4])
        variant = _valid_keys.get(fields[5]) or _remember(_valid_keys, _KEY, fields[5])
        if experiment is None or variant is None:
            return None
        return tuple.__new__(
            StreamEvent, ("exposure", key, tenant, event_id, micros, experiment, variant, "", 0.0)
        )
    name = _valid_names.get(fields[4]) or _remember(_valid_names, _EVENT_NAME, fields[4])
    value: float = fields[5]
    if name is None or value - value != 0.0:  # not finite: inf - inf and nan - nan are nan
        return None
    return tuple.__new__(
        StreamEvent, ("outcome", key, tenant, event_id, micros, "", "", name, value)
    )


# Valid values seen, each mapped to its first instance: events then share one string
# (unit states hold names by the million, and equal keys compare by identity).
_valid_tenants: Final[dict[str, str]] = {}
_valid_keys: Final[dict[str, str]] = {}
_valid_names: Final[dict[str, str]] = {}
_REMEMBERED_MAX: Final = 100_000


def _bounded(values: dict[str, Any]) -> bool:
    try:
        check_properties(values)
    except ValueError:
        return False
    return True


def _remember(valid: dict[str, str], pattern: re.Pattern[str], value: str) -> str | None:
    """``value`` if it matches ``pattern``, remembered (boundedly) as the shared instance."""
    if not pattern.match(value):
        return None
    if len(valid) >= _REMEMBERED_MAX:
        valid.clear()
    valid[value] = value
    return value


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


def _element_letter(
    message: KafkaMessage, index: int, element: bytes, errors: list[FieldError]
) -> DeadLetter:
    """The dead letter of one element of a batch: its index, its errors, its JSON."""
    return DeadLetter(
        stage=STAGE,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        batch_index=index,
        reason=f"batch element {index}: " + " ".join(describe(errors).split()),
        errors=errors,
        payload=element.decode("utf-8", errors="replace"),
    )


def _batch_size_letter(message: KafkaMessage, size: int) -> DeadLetter:
    reason = f"a batch holds 1 to {MAX_BATCH_EVENTS} events, this one {size}"
    return _dead_letter(message, [FieldError(field="", reason=reason)])
