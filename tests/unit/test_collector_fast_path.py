"""The collector's msgspec fast path agrees with the pydantic contract: whatever it
accepts, ``validate_slowly`` (pydantic) accepts with the same values, so the collector
accepts and refuses exactly what it did before, with the same messages. Both entries are
checked: a whole body decoded at once (``decode_fast`` and ``accept``) and one event
already parsed (``fast_event``, for bodies that do not decode whole)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import parse_event
from services.collector.config import CollectorConfig
from services.collector.fast_path import Window, accept, decode_fast, doubtful, fast_event
from services.collector.validation import AcceptedEvent, validate_slowly

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = CollectorConfig()
PAST = CONFIG.max_past_s

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.just("x" * 5000),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
timestamps = st.sampled_from(
    [
        "2026-03-01T11:00:00Z",
        "2026-03-01T11:00:00.123456Z",
        "2026-03-01T11:00:00.1234567Z",
        "2026-03-01T13:30:00+05:30",
        "2026-03-01T11:00:00",
        "2026-03-01",
        "2026-03-01T12:10:00Z",  # beyond max_future_s
        "2020-01-01T00:00:00Z",  # beyond max_past_s
        "2026-03-01t11:00:00z",
        "2026-03-01 11:00:00Z",
        "1772362800",
    ]
) | st.datetimes(
    min_value=datetime(2026, 2, 1), max_value=datetime(2026, 3, 2), timezones=st.just(UTC)
).map(lambda d: d.isoformat())
fields = {
    "type": st.sampled_from(["outcome", "exposure", "other", 1]),
    "event_id": st.uuids().map(str)
    | st.uuids().map(lambda u: u.hex)
    | st.uuids().map(lambda u: str(u).upper())
    | st.sampled_from(["", "not-a-uuid", "{12345678-1234-5678-1234-567812345678}"]),
    "tenant_id": st.sampled_from(["acme", "globex", None, 3]),
    "unit_id": st.text(max_size=4) | st.sampled_from(["u" * 256, "u" * 257]) | json_values,
    "timestamp": timestamps | json_values,
    "received_at": st.none() | st.sampled_from(["2026-03-01T12:00:00Z", "whenever", 7]),
    "schema_version": st.sampled_from([1, 2, True, "1", 1.0]),
    "experiment_key": st.sampled_from(["checkout", "Checkout", "a.b-c_d", ""]) | json_values,
    "variant_key": st.sampled_from(["control", "x y"]) | json_values,
    "experiment_version": st.sampled_from([1, 2, 0, -1, True, "2", 1.5, 10**12]),
    "attributes": st.dictionaries(st.text(max_size=3), json_values, max_size=3) | json_values,
    "event": st.sampled_from(["purchase", "page.view", "a:b", "-bad", "", "a\n"]) | json_values,
    "value": st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from([True, "2.5", None, 1e15, -1e15, 1.0000001e15]),
    "properties": st.dictionaries(st.text(max_size=3), json_values, max_size=3) | json_values,
    "extra": json_values,
}
required = {
    "outcome": ["type", "event_id", "unit_id", "timestamp", "event"],
    "exposure": ["type", "event_id", "unit_id", "timestamp", "experiment_key", "variant_key"],
}


def written_id(encoded: bytes) -> str:
    """The event id as the collector writes it (de-duplication downstream compares it)."""
    return str(orjson.loads(encoded)["event_id"])


def draw_event(data: st.DataObject) -> dict[str, Any]:
    kind = data.draw(st.sampled_from(["outcome", "exposure"]), label="kind")
    optional = data.draw(st.sets(st.sampled_from(sorted(fields))), label="optional")
    item: dict[str, Any] = {"type": kind}
    for name in sorted(set(required[kind]) | optional):
        if name != "type" or data.draw(st.booleans(), label="other type"):
            item[name] = data.draw(fields[name], label=name)
    return item


@settings(max_examples=2000, deadline=None)
@given(data=st.data())
def test_whatever_the_fast_path_accepts_pydantic_accepts_with_the_same_values(
    data: st.DataObject,
) -> None:
    try:
        item = orjson.loads(orjson.dumps(draw_event(data)))  # as the request body parses
    except orjson.JSONEncodeError:
        return
    fast = fast_event(item, "acme", NOW, CONFIG, PAST)
    slow = validate_slowly(0, item, "acme", NOW, CONFIG, PAST)
    if fast is None:
        return
    assert isinstance(slow, AcceptedEvent), (item, slow)
    assert parse_event(fast.to_json()) == slow.event, item
    assert written_id(fast.to_json()) == str(slow.event.event_id), item


def test_ordinary_events_take_the_fast_path() -> None:
    outcome = {
        "type": "outcome",
        "event_id": str(uuid.uuid4()),
        "unit_id": "user-1",
        "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
        "event": "purchase",
        "value": 3,
        "properties": {"sku": "A"},
    }
    exposure = {
        "type": "exposure",
        "event_id": str(uuid.uuid4()),
        "tenant_id": "acme",
        "unit_id": "user-1",
        "timestamp": "2026-03-01T13:00:00+02:00",
        "experiment_key": "checkout",
        "variant_key": "control",
        "attributes": {"plan": "pro", "age": 3},
    }
    for item in (outcome, exposure):
        fast = fast_event(item, "acme", NOW, CONFIG, PAST)
        assert fast is not None, item
        assert fast.received_at == NOW and fast.timestamp.tzinfo is UTC
        slow = validate_slowly(0, item, "acme", NOW, CONFIG, PAST)
        assert isinstance(slow, AcceptedEvent)
        assert parse_event(fast.to_json()) == slow.event


ordinary_fields = {
    "event_id": st.uuids().map(str),
    "tenant_id": st.sampled_from(["acme", None]),
    "unit_id": st.text(min_size=1, max_size=6),
    "timestamp": timestamps,
    "event": st.sampled_from(["purchase", "page.view", "a:b"]),
    "value": st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6),
    "properties": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    "experiment_key": st.sampled_from(["checkout", "a.b-c_d"]),
    "variant_key": st.sampled_from(["control", "treatment"]),
    "experiment_version": st.integers(1, 5),
    "attributes": st.dictionaries(
        st.text(max_size=3), st.none() | st.booleans() | st.integers() | st.text(max_size=3)
    ),
}


def draw_near_ordinary_event(data: st.DataObject) -> dict[str, Any]:
    """An ordinary event with up to two fields changed to anything ``fields`` draws, or
    dropped: most decode, and the changes probe each check of the fast path."""
    kind = data.draw(st.sampled_from(["outcome", "exposure"]), label="kind")
    names = [*required[kind][1:], "tenant_id"] + (
        ["value", "properties"] if kind == "outcome" else ["experiment_version", "attributes"]
    )
    item: dict[str, Any] = {"type": kind}
    for name in names:
        item[name] = data.draw(ordinary_fields[name], label=name)
    for name in data.draw(st.sets(st.sampled_from(sorted(fields)), max_size=2), label="odd"):
        if data.draw(st.booleans(), label=f"drop {name}"):
            item.pop(name, None)
        else:
            item[name] = data.draw(fields[name], label=f"odd {name}")
    return item


@settings(max_examples=300, deadline=None)
@given(data=st.data(), wrapped=st.booleans(), size=st.integers(1, 4))
def test_whatever_a_whole_body_decode_accepts_pydantic_accepts_with_the_same_values(
    data: st.DataObject, wrapped: bool, size: int
) -> None:
    events = [draw_near_ordinary_event(data) for _ in range(size)]
    try:
        body = orjson.dumps({"events": events} if wrapped else events)
    except orjson.JSONEncodeError:
        return
    decoded = decode_fast(body)
    if decoded is None:
        return
    items = orjson.loads(body)
    items = items["events"] if wrapped else items
    assert len(decoded) == len(items)
    window = Window("acme", NOW, CONFIG, PAST)
    for index, (event, item) in enumerate(zip(decoded, items, strict=True)):
        if not accept(event, window):
            continue
        slow = validate_slowly(index, item, "acme", NOW, CONFIG, PAST)
        assert isinstance(slow, AcceptedEvent), (item, slow)
        assert parse_event(event.to_json()) == slow.event, item
        assert written_id(event.to_json()) == str(slow.event.event_id), item


def test_a_body_of_ordinary_events_decodes_whole_and_each_is_accepted() -> None:
    events = [
        {
            "type": "outcome",
            "event_id": str(uuid.uuid4()),
            "unit_id": f"user-{i}",
            "timestamp": (NOW - timedelta(seconds=i)).isoformat(),
            "event": "purchase",
            "value": i,
            **({"properties": {"sku": "A", "n": [1, 2.5]}} if i % 2 else {}),
        }
        for i in range(20)
    ]
    decoded = decode_fast(orjson.dumps({"events": events}))
    assert decoded is not None
    window = Window("acme", NOW, CONFIG, PAST)
    assert all(accept(event, window) for event in decoded)
    for event, item in zip(decoded, events, strict=True):
        slow = validate_slowly(0, item, "acme", NOW, CONFIG, PAST)
        assert isinstance(slow, AcceptedEvent)
        assert parse_event(event.to_json()) == slow.event


def test_bodies_the_fast_decode_is_not_sure_of_go_to_the_careful_path() -> None:
    ordinary = {
        "type": "outcome",
        "event_id": str(uuid.uuid4()),
        "unit_id": "u",
        "timestamp": "2026-03-01T11:00:00Z",
        "event": "purchase",
    }
    without_id = {key: value for key, value in ordinary.items() if key != "event_id"}
    for body in (
        orjson.dumps({"events": [ordinary, without_id]}),  # its id derives from the content
        orjson.dumps({"events": [{**ordinary, "extra": 1}]}),  # pydantic names the field
        orjson.dumps({"events": [{**ordinary, "timestamp": "2026-03-01T11:00:00.1234567Z"}]}),
        orjson.dumps({"events": [ordinary], "more": 1}),
        orjson.dumps({"events": []}),
        b"[" * 5000 + b"]" * 5000,
        b'{"events": [' + b"\xff" + b"]}",
    ):
        assert decode_fast(body) is None, body


def test_an_event_near_the_size_limit_is_measured_not_estimated() -> None:
    config = CollectorConfig(max_event_bytes=1300)
    window = Window("acme", NOW, config, PAST)
    event = {
        "type": "outcome",
        "event_id": str(uuid.uuid4()),
        "unit_id": "u",
        "timestamp": "2026-03-01T11:00:00Z",
        "event": "purchase",
    }
    decoded = decode_fast(orjson.dumps([event, {**event, "properties": {"note": "x" * 200}}]))
    assert decoded is not None
    assert [accept(each, window) for each in decoded] == [True, False]


def test_only_canonical_ids_take_the_fast_path_and_pydantic_writes_the_others_canonical() -> None:
    """The fast path writes the client's id string as it is, so it must take only the
    form pydantic writes; an id written in two forms would be counted twice downstream."""
    canonical = str(uuid.uuid4())
    other = str(uuid.uuid4())
    event = {
        "type": "outcome",
        "unit_id": "u",
        "timestamp": "2026-03-01T11:00:00Z",
        "event": "purchase",
    }
    odd_forms = [
        canonical.upper(),
        uuid.UUID(canonical).hex,
        "{" + canonical + "}",
        f"{canonical}\n{other}",  # two ids in one: the joined check must not split it
        canonical[:35] + "g",
        canonical + " ",
        canonical + "0",  # one hex digit too many, at the end of the batch
    ]
    window = Window("acme", NOW, CONFIG, PAST)
    for odd in odd_forms:
        items = [{**event, "event_id": canonical}, {**event, "event_id": odd}]
        decoded = decode_fast(orjson.dumps(items))
        assert decoded is not None, odd
        assert doubtful(decoded, window) == [1], odd  # the whole batch's check
        assert [accept(each, window) for each in decoded] == [True, False], odd  # one by one
        slow = validate_slowly(1, items[1], "acme", NOW, CONFIG, PAST)
        if isinstance(slow, AcceptedEvent):
            assert written_id(slow.event.to_json()) == str(uuid.UUID(odd.strip("{}"))), odd
    many = [{**event, "event_id": str(uuid.uuid4())} for _ in range(300)]
    decoded = decode_fast(orjson.dumps(many))
    assert decoded is not None
    assert all(accept(each, window) for each in decoded)
    assert [written_id(each.to_json()) for each in decoded] == [e["event_id"] for e in many]
