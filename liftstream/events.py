"""The events the SDK sends, validated with msgspec on the caller's thread.

``track`` and ``expose`` run on a service's request path, so an event costs its caller a
few µs: the arguments are checked by msgspec against the constraints of
``schemas.events`` (types, lengths, aware timestamps), key and name patterns against
values already seen valid, ``properties``/``attributes`` with the contract's own
``check_properties``, and the event is a msgspec ``Struct`` (``Outcome``/``Exposure``)
that encodes to the contract's JSON in the background. Whatever the fast path does not
accept, or takes no position on (a value that is not a plain ``str``/``float``/
``datetime``...), pydantic decides (``schemas.events``): so what is accepted, with which
values, and every error message, is the contract's (``tests/unit/test_sdk_events.py``
checks the two agree on generated arguments).

Event ids: a random 66-bit prefix per process (drawn again in a forked child) and a
56-bit sequence, written as a version-4 UUID; unique without a system call per event.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from schemas.events import ExposureEvent, OutcomeEvent
from schemas.identifiers import is_event_name, is_key
from schemas.limits import MAX_OUTCOME_VALUE, MAX_UNIT_ID_CHARS, MAX_VERSION, check_properties

_UnitId = Annotated[str, Meta(min_length=1, max_length=MAX_UNIT_ID_CHARS)]
_Aware = Annotated[datetime, Meta(tz=True)]


class Outcome(msgspec.Struct, frozen=True, tag_field="type", tag="outcome", gc=False):
    """An outcome event as sent (the fields of ``schemas.events.OutcomeEvent``)."""

    event_id: str
    tenant_id: str
    unit_id: str
    timestamp: datetime
    event: str
    value: float = 1.0
    properties: dict[str, Any] = {}

    @property
    def type(self) -> str:
        return "outcome"

    @property
    def partition_key(self) -> bytes:
        """The Kafka key ``tenant:unit`` (its partition groups the unit's events)."""
        return f"{self.tenant_id}:{self.unit_id}".encode()

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)

    def to_model(self) -> OutcomeEvent:
        """The same event as the contract's pydantic model."""
        return OutcomeEvent.model_validate_json(self.to_json())


class Exposure(msgspec.Struct, frozen=True, tag_field="type", tag="exposure", gc=False):
    """An exposure event as sent (the fields of ``schemas.events.ExposureEvent``)."""

    event_id: str
    tenant_id: str
    unit_id: str
    timestamp: datetime
    experiment_key: str
    variant_key: str
    experiment_version: int = 1
    attributes: dict[str, str | int | float | bool | None] = {}

    @property
    def type(self) -> str:
        return "exposure"

    @property
    def partition_key(self) -> bytes:
        return f"{self.tenant_id}:{self.unit_id}".encode()

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)

    def to_model(self) -> ExposureEvent:
        return ExposureEvent.model_validate_json(self.to_json())


SdkEvent = Outcome | Exposure
_ENCODER: Final = msgspec.json.Encoder()


class _OutcomeArgs(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    unit_id: _UnitId
    event: str
    value: float
    properties: dict[str, Any]
    timestamp: _Aware


class _ExposureArgs(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    unit_id: _UnitId
    experiment_key: str
    variant_key: str
    experiment_version: Annotated[int, Meta(ge=1, le=MAX_VERSION)]
    attributes: dict[str, str | int | float | bool | None]
    timestamp: _Aware


class _EventIds:
    """Version-4-shaped UUID strings: a random prefix per process, then a sequence."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        h = secrets.token_hex(8)
        # 64 random bits around the version nibble 4; the fourth group starts with the
        # variant bits 10 and two more random bits (8..b).
        variant = "89ab"[secrets.randbelow(4)]
        self._prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{variant}{h[15]}"
        self._counter = itertools.count()

    def next(self) -> str:
        # 2 + 12 hex digits of sequence: 2**56 ids per process before a prefix repeats.
        number = next(self._counter)
        return f"{self._prefix}{(number >> 48) & 0xFF:02x}-{number & 0xFFFFFFFFFFFF:012x}"


new_event_id: Final = _EventIds().next


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def fast_outcome(
    tenant_id: str,
    unit_id: Any,
    event: Any,
    value: Any,
    properties: Mapping[str, Any] | None,
    timestamp: Any,
) -> Outcome | None:
    """The outcome if the fast path is sure it is valid; None to let pydantic decide.
    ``tenant_id`` was checked when the client was made; ``timestamp`` None means now."""
    if type(value) is int:
        if not -(2**53) <= value <= 2**53:
            return None
        value = float(value)
    if (
        type(unit_id) is not str
        or type(event) is not str
        or type(value) is not float
        or not -MAX_OUTCOME_VALUE <= value <= MAX_OUTCOME_VALUE  # also false for NaN
        or (timestamp is not None and type(timestamp) is not datetime)
        or (properties is not None and type(properties) is not dict)
    ):
        return None
    moment = datetime.now(UTC) if timestamp is None else timestamp
    props: dict[str, Any] = {} if properties is None else properties
    try:
        args = msgspec.convert((unit_id, event, value, props, moment), _OutcomeArgs)
        if props:
            check_properties(props)
    except (msgspec.ValidationError, ValueError):
        return None
    if not is_event_name(event):
        return None
    return Outcome(
        new_event_id(), tenant_id, unit_id, _utc(args.timestamp), event, value, dict(props)
    )


def fast_exposure(
    tenant_id: str,
    unit_id: Any,
    experiment_key: str,
    variant_key: str,
    experiment_version: int,
    attributes: Mapping[str, Any] | None,
    timestamp: Any,
) -> Exposure | None:
    """The exposure if the fast path is sure it is valid; None to let pydantic decide."""
    if (
        type(unit_id) is not str
        or (timestamp is not None and type(timestamp) is not datetime)
        or (attributes is not None and type(attributes) is not dict)
        or type(experiment_version) is not int
    ):
        return None
    moment = datetime.now(UTC) if timestamp is None else timestamp
    attrs: dict[str, Any] = {} if attributes is None else attributes
    try:
        args = msgspec.convert(
            (unit_id, experiment_key, variant_key, experiment_version, attrs, moment),
            _ExposureArgs,
        )
        if attrs:
            if any(type(v) not in _SCALARS for v in attrs.values()):
                return None  # pydantic's coercions of other scalars are its own
            check_properties(attrs)
    except (msgspec.ValidationError, ValueError):
        return None
    if not is_key(experiment_key):
        return None
    if not is_key(variant_key):
        return None
    return Exposure(
        new_event_id(),
        tenant_id,
        unit_id,
        _utc(args.timestamp),
        experiment_key,
        variant_key,
        experiment_version,
        dict(attrs),
    )


_SCALARS: Final = (str, int, float, bool, type(None))


def from_model(event: OutcomeEvent | ExposureEvent) -> SdkEvent:
    """The SDK event of a model pydantic validated (the slow path), with a fresh id."""
    if isinstance(event, OutcomeEvent):
        return Outcome(
            new_event_id(),
            event.tenant_id,
            event.unit_id,
            event.timestamp,
            event.event,
            event.value,
            dict(event.properties),
        )
    return Exposure(
        new_event_id(),
        event.tenant_id,
        event.unit_id,
        event.timestamp,
        event.experiment_key,
        event.variant_key,
        event.experiment_version,
        dict(event.attributes),
    )
