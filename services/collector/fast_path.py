"""The collector's fast path: ordinary events decoded and checked by msgspec, not pydantic.

``validation.validate_event`` costs ~30 µs an event through pydantic (serialise, validate,
serialise again). Most events are ordinary: an id, a plain JSON object of the contract's
fields with values of the expected JSON types. For those the fast path decodes the
request body straight into structs mirroring ``schemas.events`` (types, lengths, aware
timestamps, the value bound) in one msgspec call (``decode_fast``, about 1 µs an event),
then checks each event in plain Python (``accept``): key and name patterns against values already
seen valid, free-form maps with the contract's own ``check_properties``, and the
collector's limits (tenant, timestamp window, size), and every event id's form in one
pass over them all (``_all_canonical``: ids stay the client's strings). An accepted
event is the decoded struct itself, stamped with the tenant and ``received_at``: the
sink encodes a partition's events in one call (``sink.as_batch_messages``).

Anything it is not sure of goes to pydantic, with its error messages: a body msgspec
cannot decode whole into structs (an event without ``event_id``, whose id derives from
the content; a value of another JSON type than expected; an unknown field; a timestamp
finer than microseconds, which msgspec rounds where pydantic truncates) is parsed again
by ``body.decode_batch`` and each event tried alone (``fast_event``); an event that
decodes but fails a check is decided by pydantic alone.
``tests/unit/test_collector_fast_path.py`` checks on generated events that whatever
either entry accepts, pydantic accepts with the same values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from schemas.identifiers import is_event_name, is_key
from schemas.limits import (
    MAX_FREE_FORM_BYTES,
    MAX_OUTCOME_VALUE,
    MAX_UNIT_ID_CHARS,
    check_properties,
)
from schemas.partitioning import unit_partition_key
from services.collector.config import CollectorConfig

_FINE_FRACTION: Final = re.compile(r"\.[0-9]{7}")
#: An event id as pydantic writes it (lowercase, hyphenated). The fast path keeps the
#: client's string, so it takes only this form: any other (upper case, no hyphens,
#: braces) goes to pydantic, which writes it in this form.
_CANONICAL_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_LINE: Final = len("00000000-0000-0000-0000-000000000000\n")
_ID_HYPHENS: Final = (8, 13, 18, 23)
_HEX_DIGITS: Final = b"0123456789abcdef"
#: A ``timestamp`` string with more than six fractional digits anywhere in a body.
_FINE_TIMESTAMP: Final = re.compile(rb'"timestamp"\s*:\s*"[^"]*\.[0-9]{7}')
#: Seven digits after a dot anywhere in a body: the cheap test (half the time of the exact
#: one) that a body has no fine timestamp; only a body that has them is searched exactly.
_SEVEN_DECIMALS: Final = re.compile(rb"\.[0-9]{7}")
_valid_keys: Final = is_key.accepted
_valid_names: Final = is_event_name.accepted
#: Room left under ``max_event_bytes`` for the difference between this path's JSON and
#: the client's (a longer timestamp form, say): events closer to the limit go to pydantic.
_SIZE_MARGIN: Final = 1024
#: An encoded event's bytes besides its strings and free-form map: the field names, the
#: id, two timestamps, a number, the type tag (about 220; kept generous).
_FIXED_BYTES: Final = 512
#: JSON bytes a character of a string can take at most (``\u001f``).
_ESCAPED: Final = 6
#: The longest names an event can have once their patterns match: an outcome's event
#: name (128) or an exposure's experiment and variant keys (100 each).
_MAX_NAMES_CHARS: Final = 200

_UnitId = Annotated[str, Meta(min_length=1, max_length=MAX_UNIT_ID_CHARS)]
_Aware = Annotated[datetime, Meta(tz=True)]
_Value = Annotated[float, Meta(ge=-MAX_OUTCOME_VALUE, le=MAX_OUTCOME_VALUE)]
_Scalar = str | int | float | bool | None


class FastOutcome(
    msgspec.Struct,
    tag_field="type",
    tag="outcome",
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
):
    """An outcome as sent, then as written once accepted (the fields of
    ``schemas.events.OutcomeEvent``, in its order; ``tenant_id`` and ``received_at`` the
    collector's)."""

    # The client's string, checked in bulk (``_all_canonical``): msgspec's UUID objects
    # cost about 1 µs an event to make and again to write, most of a request's decoding.
    event_id: str
    tenant_id: str | None = None
    unit_id: _UnitId
    timestamp: _Aware
    received_at: Any = None  # replaced by the collector's clock, whatever it is
    event: str
    value: _Value = 1.0
    properties: dict[str, Any] = {}
    schema_version: Literal[1] = 1

    @property
    def type(self) -> str:
        return "outcome"

    @property
    def partition_key(self) -> bytes:
        return unit_partition_key(self.tenant_id or "", self.unit_id)

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


class FastExposure(
    msgspec.Struct,
    tag_field="type",
    tag="exposure",
    forbid_unknown_fields=True,
    kw_only=True,
    gc=False,
):
    """An exposure as sent, then as written once accepted (``schemas.events.ExposureEvent``)."""

    event_id: str
    tenant_id: str | None = None
    unit_id: _UnitId
    timestamp: _Aware
    received_at: Any = None
    experiment_key: str
    variant_key: str
    experiment_version: Annotated[int, Meta(ge=1)] = 1
    attributes: dict[str, _Scalar] = {}
    schema_version: Literal[1] = 1

    @property
    def type(self) -> str:
        return "exposure"

    @property
    def partition_key(self) -> bytes:
        return unit_partition_key(self.tenant_id or "", self.unit_id)

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)


FastEvent = FastOutcome | FastExposure


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[FastEvent]


_ENCODER: Final = msgspec.json.Encoder()
_BODY: Final = msgspec.json.Decoder(_Body | list[FastEvent])


class Window:
    """What an accepted event must satisfy besides its types: the tenant, the timestamp
    window around ``now`` and the size limit."""

    __slots__ = ("earliest", "latest", "now", "plain_fits", "room", "tenant_bytes", "tenant_id")

    def __init__(
        self, tenant_id: str, now: datetime, config: CollectorConfig, max_past_s: float
    ) -> None:
        self.tenant_id = tenant_id
        self.now = now
        self.earliest = now - timedelta(seconds=max_past_s)
        self.latest = now + timedelta(seconds=config.max_future_s)
        self.room = config.max_event_bytes - _SIZE_MARGIN
        self.tenant_bytes = _ESCAPED * len(tenant_id)
        #: Whether any event without a free-form map fits the size limit, whatever its
        #: strings (their lengths are bounded by the structs and the patterns).
        self.plain_fits = (
            _FIXED_BYTES + self.tenant_bytes + _ESCAPED * MAX_UNIT_ID_CHARS + _MAX_NAMES_CHARS
            <= self.room
        )


def decode_fast(body: bytes) -> list[FastEvent] | None:
    """The body's events as structs, unchecked (``accept`` each); None if the body does
    not decode whole into them (``body.decode_batch`` then, and ``fast_event`` per event)."""
    if _SEVEN_DECIMALS.search(body) and _FINE_TIMESTAMP.search(body):
        return None
    try:
        decoded = _BODY.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    events = decoded.events if isinstance(decoded, _Body) else decoded
    return events or None  # decode_batch names the problem of an empty batch


def fast_event(
    item: Any, tenant_id: str, now: datetime, config: CollectorConfig, max_past_s: float
) -> FastEvent | None:
    """The accepted event if the fast path is sure of it, else None (pydantic decides)."""
    if type(item) is not dict or "event_id" not in item:
        return None
    kind = item.get("type")
    target = FastOutcome if kind == "outcome" else FastExposure if kind == "exposure" else None
    if target is None:
        return None
    stamp = item.get("timestamp")
    if type(stamp) is str and _FINE_FRACTION.search(stamp):
        return None  # beyond microseconds msgspec rounds where pydantic truncates
    try:
        # One concrete type: converting to the union costs ~20 times as much.
        event: FastEvent = msgspec.convert(item, target, strict=True)
    except msgspec.ValidationError:
        return None
    return event if accept(event, Window(tenant_id, now, config, max_past_s)) else None


def accept(event: FastEvent, window: Window) -> bool:
    """Whether ``event`` (decoded, so of the right types) passes the contract's remaining
    checks and the collector's limits; if so it is stamped with the tenant, UTC timestamp
    and ``received_at``. False leaves the decision to pydantic."""
    return not doubtful([event], window)


def doubtful(events: list[FastEvent], window: Window) -> list[int]:
    """The indices of the ``events`` the fast path is not sure of (pydantic decides them);
    the others pass the contract's remaining checks and the collector's limits and are
    stamped with the tenant, UTC timestamp and ``received_at``.

    One loop with the checks inline: a function call per event and check cost as much as
    the checks (``docs/benchmarks.md``). Key and name patterns are tested against the values
    already seen valid first (a dict lookup); msgspec's own ``pattern`` constraint costs
    about 0.5 µs a string, several times as much."""
    tenant_id, now = window.tenant_id, window.now
    earliest, latest = window.earliest, window.latest
    plain_fits = window.plain_fits
    names, keys = _valid_names, _valid_keys
    unsure: list[int] = []
    ids_canonical = _all_canonical(events)
    for index, event in enumerate(events):
        if not ids_canonical and not _CANONICAL_ID.fullmatch(event.event_id):
            unsure.append(index)
            continue
        claimed = event.tenant_id
        if claimed is not None and claimed != tenant_id:
            unsure.append(index)
            continue
        moment = event.timestamp
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC)
        if moment > latest or moment < earliest:
            unsure.append(index)
            continue
        if type(event) is FastOutcome:
            name = event.event
            if name not in names and not is_event_name(name):
                unsure.append(index)
                continue
            free_form = event.properties
        else:
            experiment, variant = event.experiment_key, event.variant_key
            if (experiment not in keys and not is_key(experiment)) or (
                variant not in keys and not is_key(variant)
            ):
                unsure.append(index)
                continue
            free_form = event.attributes
        if free_form and not _bounded(free_form):
            unsure.append(index)
            continue
        event.timestamp = moment
        event.tenant_id = tenant_id
        event.received_at = now
        if (free_form or not plain_fits) and not _fits(event, bool(free_form), window):
            unsure.append(index)
    return unsure


def _all_canonical(events: list[FastEvent]) -> bool:
    """Whether every event's id is canonical, checked on them all at once (about 30 ns an
    event, where a regular expression took 200 to 330): the ids joined by newlines are
    ASCII, exactly 37 characters an id, with the hyphens and the newline in their places
    and nothing else once the hex digits are taken out. Without the total length, the
    last id could carry extra hex digits; with it, an id holding a newline or of another
    length puts a joining newline where a hex digit or hyphen must be."""
    count = len(events)
    text = "\n".join([event.event_id for event in events]) + "\n"
    if len(text) != _ID_LINE * count or not text.isascii():
        return False
    lines = text.encode("ascii")
    hyphens = b"-" * count
    return lines.translate(None, _HEX_DIGITS) == b"----\n" * count and all(
        lines[place::_ID_LINE] == hyphens for place in _ID_HYPHENS
    )


def _fits(event: FastEvent, free_form: bool, window: Window) -> bool:
    """Whether a stamped event with a free-form map (or any, under a small limit) is
    within the size limit."""
    if type(event) is FastOutcome:
        names = len(event.event)
    else:
        names = len(event.experiment_key) + len(event.variant_key)
    # The most the event can take as JSON; only events that might be near the limit are
    # encoded to measure them. msgspec writes a free-form map in no more bytes than the
    # orjson form check_properties bounds; twice that is allowed for all the same.
    most = (
        _FIXED_BYTES
        + window.tenant_bytes
        + _ESCAPED * len(event.unit_id)
        + names
        + (2 * MAX_FREE_FORM_BYTES if free_form else 0)
    )
    return most <= window.room or len(_ENCODER.encode(event)) <= window.room


def _bounded(value: dict[str, Any]) -> bool:
    try:
        check_properties(value)
    except ValueError:
        return False
    return True
