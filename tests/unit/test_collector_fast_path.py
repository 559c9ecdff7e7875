"""The collector's msgspec fast path agrees with the pydantic contract: whatever it
accepts, ``validate_slowly`` (pydantic) accepts with the same values, so the collector
accepts and refuses exactly what it did before, with the same messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import parse_event
from services.collector.config import CollectorConfig
from services.collector.fast_path import fast_event
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


@settings(max_examples=2000, deadline=None)
@given(
    kind=st.sampled_from(["outcome", "exposure"]),
    optional=st.sets(st.sampled_from(sorted(fields))),
    data=st.data(),
)
def test_whatever_the_fast_path_accepts_pydantic_accepts_with_the_same_values(
    kind: str, optional: set[str], data: st.DataObject
) -> None:
    names = set(required[kind]) | optional
    item: dict[str, Any] = {"type": kind}
    for name in sorted(names):
        if name != "type" or data.draw(st.booleans(), label="other type"):
            item[name] = data.draw(fields[name], label=name)
    try:
        item = orjson.loads(orjson.dumps(item))  # as the request body parses
    except orjson.JSONEncodeError:
        return
    fast = fast_event(item, "acme", NOW, CONFIG, PAST)
    slow = validate_slowly(0, item, "acme", NOW, CONFIG, PAST)
    if fast is None:
        return
    assert isinstance(slow, AcceptedEvent), (item, slow)
    assert parse_event(fast.to_json()) == slow.event, item


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
