"""The collector's fast path: a request's ordinary events validated by msgspec, not pydantic.

``validation.validate_event`` costs ~30 µs an event through pydantic (serialise, validate,
serialise again). Most events are ordinary: an id, a plain JSON object of the contract's
fields with values of the expected JSON types. For those, ``fast_event`` converts the
already parsed object with msgspec against a mirror of ``schemas.events`` (types, lengths,
aware timestamps, the value bound), checks key and name patterns against values already
seen valid, free-form maps with the contract's own ``check_properties``, and the
collector's limits (tenant, timestamp window, size), and returns the event ready to
encode. Anything it is not sure of (no ``event_id``: its id derives from the content; a
value of another JSON type than expected; any refusal) returns None and pydantic decides,
with its error messages (``tests/unit/test_collector_fast_path.py`` checks on generated
events that whatever the fast path accepts, pydantic accepts with the same values).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from schemas.limits import MAX_OUTCOME_VALUE, MAX_UNIT_ID_CHARS, check_properties
from services.collector.config import CollectorConfig

_KEY: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}\Z")
_EVENT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_REMEMBERED_MAX: Final = 10_000
_FINE_FRACTION: Final = re.compile(r"\.[0-9]{7}")
_valid_keys: dict[str, bool] = {}
_valid_names: dict[str, bool] = {}
#: Room left under ``max_event_bytes`` for the difference between this path's JSON and
#: the client's (a longer timestamp form, say): events closer to the limit go to pydantic.
_SIZE_MARGIN: Final = 1024

_UnitId = Annotated[str, Meta(min_length=1, max_length=MAX_UNIT_ID_CHARS)]
_Aware = Annotated[datetime, Meta(tz=True)]
_Scalar = str | int | float | bool | None


class _InOutcome(msgspec.Struct, tag_field="type", tag="outcome", forbid_unknown_fields=True):
    event_id: uuid.UUID
    unit_id: _UnitId
    timestamp: _Aware
    event: str
    value: Annotated[float, Meta(ge=-MAX_OUTCOME_VALUE, le=MAX_OUTCOME_VALUE)] = 1.0
    properties: dict[str, Any] = {}
    tenant_id: str | None = None
    received_at: Any = None  # replaced by the collector's clock, whatever it is
    schema_version: Literal[1] = 1


class _InExposure(msgspec.Struct, tag_field="type", tag="exposure", forbid_unknown_fields=True):
    event_id: uuid.UUID
    unit_id: _UnitId
    timestamp: _Aware
    experiment_key: str
    variant_key: str
    experiment_version: Annotated[int, Meta(ge=1)] = 1
    attributes: dict[str, _Scalar] = {}
    tenant_id: str | None = None
    received_at: Any = None
    schema_version: Literal[1] = 1


class FastOutcome(msgspec.Struct, tag_field="type", tag="outcome", gc=False):
    """An accepted outcome, as written (the fields of ``schemas.events.OutcomeEvent``)."""

    event_id: uuid.UUID
    tenant_id: str
    unit_id: str
    timestamp: datetime
    received_at: datetime
    event: str
    value: float
    properties: dict[str, Any]
    schema_version: int = 1

    @property
    def type(self) -> str:
        return "outcome"

    @property
    def partition_key(self) -> bytes:
        return f"{self.tenant_id}:{self.unit_id}".encode()

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


class FastExposure(msgspec.Struct, tag_field="type", tag="exposure", gc=False):
    """An accepted exposure, as written (the fields of ``schemas.events.ExposureEvent``)."""

    event_id: uuid.UUID
    tenant_id: str
    unit_id: str
    timestamp: datetime
    received_at: datetime
    experiment_key: str
    variant_key: str
    experiment_version: int
    attributes: dict[str, _Scalar]
    schema_version: int = 1

    @property
    def type(self) -> str:
        return "exposure"

    @property
    def partition_key(self) -> bytes:
        return f"{self.tenant_id}:{self.unit_id}".encode()

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


_ENCODER: Final = msgspec.json.Encoder()
_Input = _InOutcome | _InExposure


def _matches(valid: dict[str, bool], pattern: re.Pattern[str], value: str) -> bool:
    if value in valid:
        return True
    if not pattern.match(value):
        return False
    if len(valid) >= _REMEMBERED_MAX:
        valid.clear()
    valid[value] = True
    return True


def fast_event(
    item: Any, tenant_id: str, now: datetime, config: CollectorConfig, max_past_s: float
) -> FastOutcome | FastExposure | None:
    """The accepted event if the fast path is sure of it, else None (pydantic decides)."""
    if type(item) is not dict or "event_id" not in item:
        return None
    claimed = item.get("tenant_id")
    if claimed is not None and claimed != tenant_id:
        return None
    stamp = item.get("timestamp")
    if type(stamp) is str and _FINE_FRACTION.search(stamp):
        return None  # beyond microseconds msgspec rounds where pydantic truncates
    try:
        event = msgspec.convert(item, _Input, strict=True)
    except msgspec.ValidationError:
        return None
    moment = event.timestamp.astimezone(UTC)
    if moment > now + timedelta(seconds=config.max_future_s):
        return None
    if moment < now - timedelta(seconds=max_past_s):
        return None
    accepted: FastOutcome | FastExposure
    if isinstance(event, _InOutcome):
        if not _matches(_valid_names, _EVENT_NAME, event.event):
            return None
        if event.properties and not _bounded(event.properties):
            return None
        accepted = FastOutcome(
            event.event_id,
            tenant_id,
            event.unit_id,
            moment,
            now,
            event.event,
            float(event.value),
            event.properties,
        )
    else:
        if not (
            _matches(_valid_keys, _KEY, event.experiment_key)
            and _matches(_valid_keys, _KEY, event.variant_key)
        ):
            return None
        if event.attributes and not _bounded(event.attributes):
            return None
        accepted = FastExposure(
            event.event_id,
            tenant_id,
            event.unit_id,
            moment,
            now,
            event.experiment_key,
            event.variant_key,
            event.experiment_version,
            event.attributes,
        )
    if len(accepted.to_json()) > config.max_event_bytes - _SIZE_MARGIN:
        return None
    return accepted


def _bounded(value: dict[str, Any]) -> bool:
    try:
        check_properties(value)
    except ValueError:
        return False
    return True
