"""Turn one Kafka message of a platform topic into rows of a ``LoadBatch``, or a rejection.

Each topic is parsed with its contract from ``schemas``. A message of an event topic is
one event or a batch (a JSON array, ``schemas.events``): each good element of a batch
becomes a row, and its bad elements are recorded together as the message's rejection. A
message that does not parse is not loaded: it is recorded in ``load_rejections`` with
the field and the reason (the stream already dead-letters bad raw events; this keeps the
loader's count visible), and with the tenant and subject its Kafka key names
(``tenant:unit`` on event topics, ``tenant:subject`` on the control topic; for a batch,
whose key names nobody, the tenant its first bad element claims), so a control event
that cannot be read is shown on its tenant's experiment. Dead letters are stored with
the tenant their key names: the collector keys a refused event by the API key's tenant,
never by what the event claims.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import TypeVar

import msgspec
from pydantic import ValidationError

from analytics.load_batch import LoadBatch
from schemas.aggregates import parse_aggregate
from schemas.control import parse_control_event
from schemas.deadletter import DeadLetter
from schemas.errors import describe, field_errors
from schemas.events import (
    ExposureEvent,
    OutcomeEvent,
    event_errors,
    is_batch,
    parse_event_batch,
)
from schemas.limits import MAX_BATCH_EVENTS, MAX_TEXT_CHARS
from schemas.topics import TopicCatalog

#: Namespace of event ids derived from a message's log position when it carries none.
_POSITION_IDS = uuid.UUID("2f6d1c8e-5a43-4f0b-9d2e-6b1f0c7a9e31")

_Event = TypeVar("_Event", ExposureEvent, OutcomeEvent)
_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\Z")
_SUBJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
#: A JSON array, each element kept as its JSON text (validated one by one).
_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class TopicRole(StrEnum):
    EXPOSURES = "exposures"
    OUTCOMES = "outcomes"
    AGGREGATES = "aggregates"
    CONTROL = "control"
    DEADLETTER = "deadletter"


_EVENT_ROLES = (TopicRole.EXPOSURES, TopicRole.OUTCOMES)


def topic_roles(catalog: TopicCatalog) -> dict[str, TopicRole]:
    """Topic name -> what it holds, for every topic the loader reads."""
    return {getattr(catalog, role.value): role for role in TopicRole}


def add_message(
    batch: LoadBatch,
    role: TopicRole,
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    key: bytes | None = None,
) -> None:
    """Add one message to ``batch``: parsed rows, a rejection, or a skip (tombstone)."""
    if value is None:
        batch.skip(topic, partition, offset)
        return
    if role in _EVENT_ROLES and is_batch(value):
        try:
            _add_event_batch(batch, role, topic, partition, offset, value, key)
        except Exception as error:  # whatever one message does, the loader goes on
            reason = f"could not be read: {type(error).__name__}: {error}"
            reject(batch, role, topic, partition, offset, value, key, reason)
        return
    try:
        if role is TopicRole.EXPOSURES:
            exposure = _stable_id(
                ExposureEvent.model_validate_json(value), topic, partition, offset
            )
            batch.add_exposure(topic, partition, offset, exposure)
        elif role is TopicRole.OUTCOMES:
            outcome = _stable_id(OutcomeEvent.model_validate_json(value), topic, partition, offset)
            batch.add_outcome(topic, partition, offset, outcome)
        elif role is TopicRole.AGGREGATES:
            batch.add_aggregate(topic, partition, offset, parse_aggregate(value))
        elif role is TopicRole.CONTROL:
            batch.add_control(topic, partition, offset, parse_control_event(value))
        else:
            letter = DeadLetter.model_validate_json(value)
            tenant, _ = claimed_by(key)
            batch.add_deadletter(
                topic, partition, offset, letter, getattr(letter, "tenant_id", None) or tenant
            )
    except ValidationError as error:
        reject(batch, role, topic, partition, offset, value, key, describe(field_errors(error)))
    except Exception as error:  # whatever one message does, the loader goes on
        reason = f"could not be read: {type(error).__name__}: {error}"
        reject(batch, role, topic, partition, offset, value, key, reason)


def reject(
    batch: LoadBatch,
    role: TopicRole,
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    key: bytes | None,
    reason: str,
) -> None:
    """Record the message in ``load_rejections`` with ``reason`` and the tenant (and, on
    the control topic, the subject) its key names."""
    tenant, subject = claimed_by(key)
    batch.add_rejection(
        topic,
        partition,
        offset,
        reason[:MAX_TEXT_CHARS],
        value.decode("utf-8", errors="replace"),
        tenant,
        subject if role is TopicRole.CONTROL else None,
    )


def claimed_by(key: bytes | None) -> tuple[str | None, str | None]:
    """The (tenant, subject) a message's ``tenant:rest`` key names; None where it names no
    valid one (a key is at most a few hundred bytes when valid: longer ones are not read)."""
    if not key or len(key) > 256:
        return None, None
    tenant, _, rest = key.decode("utf-8", errors="replace").partition(":")
    if not _TENANT.match(tenant):
        return None, None
    return tenant, rest if _SUBJECT.match(rest) else None


class _Claim(msgspec.Struct):
    """What a bad element of a batch claims to be (any other field is ignored)."""

    tenant_id: str | None = None
    unit_id: str | None = None


def _claimed_by_element(element: bytes) -> tuple[str | None, str | None]:
    try:
        claim = msgspec.json.decode(element, type=_Claim)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None
    if claim.tenant_id is None or claim.unit_id is None:
        return None, None
    return claimed_by(f"{claim.tenant_id}:{claim.unit_id}".encode())


def _add_event_batch(
    batch: LoadBatch,
    role: TopicRole,
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    key: bytes | None,
) -> None:
    """A batch message: each good element becomes a row; the bad ones are recorded
    together as the message's rejection, each with its index (and the tenant the key,
    else the first bad element, claims)."""
    tenant, _ = claimed_by(key)
    try:
        elements = _RAW_ARRAY.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        try:
            parse_event_batch(value)
            reason = "not a JSON array of events"  # pragma: no cover - pydantic refuses too
        except ValidationError as error:
            reason = describe(event_errors(error))
        batch.add_rejection(topic, partition, offset, reason, _text(value), tenant)
        return
    if not 1 <= len(elements) <= MAX_BATCH_EVENTS:
        reason = f"a batch holds 1 to {MAX_BATCH_EVENTS} events, this one {len(elements)}"
        batch.add_rejection(topic, partition, offset, reason, _text(value), tenant)
        return
    problems: list[str] = []
    for index, element in enumerate(elements):
        try:
            if role is TopicRole.EXPOSURES:
                exposure = ExposureEvent.model_validate_json(bytes(element))
                exposure = _stable_id(exposure, topic, partition, offset, index)
                batch.add_exposure(topic, partition, offset, exposure)
            else:
                outcome = OutcomeEvent.model_validate_json(bytes(element))
                outcome = _stable_id(outcome, topic, partition, offset, index)
                batch.add_outcome(topic, partition, offset, outcome)
        except ValidationError as error:
            problems.append(f"batch element {index}: {describe(event_errors(error))}")
            if tenant is None:
                tenant, _ = _claimed_by_element(bytes(element))
    if problems:
        batch.add_rejection(topic, partition, offset, "; ".join(problems), _text(value), tenant)


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _stable_id(
    event: _Event, topic: str, partition: int, offset: int, index: int | None = None
) -> _Event:
    """An event without an ``event_id`` gets one derived from its log position (and its
    index in a batch).

    The model would otherwise invent a random one, and a rebuilt file would not match.
    """
    if "event_id" in event.model_fields_set:
        return event
    position = f"{topic}/{partition}/{offset}" + ("" if index is None else f"/{index}")
    derived = uuid.uuid5(_POSITION_IDS, position)
    return event.model_copy(update={"event_id": derived})
