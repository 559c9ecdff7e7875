"""Decoding batch bodies and validating events one by one (pure, no broker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from schemas.deadletter import DeadLetter
from schemas.limits import DEAD_LETTER_PAYLOAD_CHARS
from services.collector.body import BodyError, decode_batch
from services.collector.config import CollectorConfig
from services.collector.validation import (
    AcceptedEvent,
    RejectedEvent,
    validate_batch,
    validate_event,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = CollectorConfig(max_event_bytes=2000, max_future_s=60, max_past_s=3600)


def exposure(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "exposure",
        "unit_id": "u1",
        "timestamp": NOW.isoformat(),
        "experiment_key": "checkout",
        "variant_key": "treatment",
        **overrides,
    }


def outcome(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "outcome",
        "unit_id": "u1",
        "timestamp": NOW.isoformat(),
        "event": "purchase",
        "value": 9.5,
        **overrides,
    }


def rejected(item: Any, tenant: str = "acme") -> RejectedEvent:
    verdict = validate_event(3, item, tenant, NOW, CONFIG)
    assert isinstance(verdict, RejectedEvent), verdict
    assert verdict.index == 3
    return verdict


def test_tenant_is_filled_from_the_key_and_received_at_set_by_the_collector() -> None:
    verdict = validate_event(0, exposure(received_at="2000-01-01T00:00:00Z"), "acme", NOW, CONFIG)
    assert isinstance(verdict, AcceptedEvent)
    assert verdict.event.type == "exposure"
    assert verdict.event.tenant_id == "acme"
    assert verdict.event.received_at == NOW
    assert verdict.event.partition_key == b"acme:u1"


def test_an_event_of_another_tenant_is_refused_naming_tenant_id() -> None:
    refused = rejected(outcome(tenant_id="globex"))
    assert [e.field for e in refused.errors] == ["tenant_id"]
    assert "acme" in refused.errors[0].reason and "globex" in refused.errors[0].reason
    assert refused.code == "tenant_mismatch"


def test_the_same_tenant_spelled_out_is_accepted() -> None:
    assert isinstance(
        validate_event(0, outcome(tenant_id="acme"), "acme", NOW, CONFIG), AcceptedEvent
    )


def test_a_schema_violation_names_the_field() -> None:
    refused = rejected(outcome(value="lots"))
    assert any(e.field.endswith("value") for e in refused.errors)
    assert refused.code == "invalid"
    assert refused.key == b"acme:u1"
    assert orjson.loads(refused.payload)["value"] == "lots"


def test_a_missing_type_is_named() -> None:
    item = exposure()
    del item["type"]
    assert any(e.field.endswith("type") for e in rejected(item).errors)


@pytest.mark.parametrize(
    ("offset", "code"),
    [(timedelta(seconds=61), "timestamp_future"), (timedelta(seconds=-3601), "timestamp_past")],
)
def test_timestamps_outside_the_window_are_refused(offset: timedelta, code: str) -> None:
    refused = rejected(outcome(timestamp=(NOW + offset).isoformat()))
    assert [e.field for e in refused.errors] == ["timestamp"]
    assert refused.code == code


def test_timestamps_at_the_edges_of_the_window_are_accepted() -> None:
    for offset in (timedelta(seconds=60), timedelta(seconds=-3600)):
        item = outcome(timestamp=(NOW + offset).isoformat())
        assert isinstance(validate_event(0, item, "acme", NOW, CONFIG), AcceptedEvent)


def test_an_oversized_event_is_refused_with_its_size() -> None:
    refused = rejected(outcome(properties={"blob": "x" * 3000}))
    assert refused.code == "event_too_large"
    assert "2000" in refused.errors[0].reason


@pytest.mark.parametrize("item", [None, 3, "event", [1, 2], True])
def test_an_event_that_is_not_an_object_is_refused(item: Any) -> None:
    refused = rejected(item)
    assert refused.code == "not_object"
    assert refused.key is None
    assert "object" in refused.errors[0].reason


def test_a_batch_keeps_the_good_events_beside_the_bad() -> None:
    event_id = str(uuid.uuid4())
    items = [outcome(event_id=event_id), outcome(value=None), exposure(), "junk"]
    verdict = validate_batch(items, "acme", NOW, CONFIG)
    assert [a.index for a in verdict.accepted] == [0, 2]
    assert [r.index for r in verdict.rejected] == [1, 3]
    assert verdict.accepted[0].event.type == "outcome"
    assert str(verdict.accepted[0].event.event_id) == event_id


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "body_empty"),
        (b"\xff\xfe{}", "body_not_utf8"),
        (b"{not json", "body_not_json"),
        (b'"a string"', "body_shape"),
        (b'{"events": {}}', "body_shape"),
        (b'{"evnts": []}', "body_shape"),
        (b"{}", "body_shape"),
        (b"[]", "body_empty"),
        (b'{"events": []}', "body_empty"),
    ],
)
def test_bodies_that_are_not_a_batch_are_refused_with_a_reason(body: bytes, code: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode_batch(body)
    assert caught.value.code == code
    assert caught.value.reason


def test_both_batch_shapes_decode_to_the_same_events() -> None:
    events = [outcome(), exposure()]
    assert decode_batch(orjson.dumps({"events": events})) == decode_batch(orjson.dumps(events))


@pytest.mark.parametrize("item", ["x" * 50_000, {"type": "outcome", "blob": "y" * 50_000}])
def test_a_dead_letter_keeps_a_bounded_excerpt_of_an_oversized_payload(item: Any) -> None:
    refused = rejected(item)
    letter = DeadLetter(
        stage="collector",
        source_topic="t",
        reason="r",
        errors=refused.errors,
        payload=refused.payload,
    )
    assert DEAD_LETTER_PAYLOAD_CHARS - 10 <= len(letter.payload) <= DEAD_LETTER_PAYLOAD_CHARS
    assert "truncated" in letter.payload and str(len(refused.payload)) in letter.payload


MIB = 1024 * 1024
BIG_CONFIG = CollectorConfig(max_event_bytes=64 * 1024)


def test_a_megabyte_tenant_id_is_refused_naming_the_field_and_quoted_not_copied() -> None:
    verdict = validate_event(0, outcome(tenant_id="m" * MIB), "acme", NOW, BIG_CONFIG)
    assert isinstance(verdict, RejectedEvent)
    assert [e.field for e in verdict.errors] == ["tenant_id"]
    assert str(MIB) in verdict.errors[0].reason and len(verdict.errors[0].reason) < 200
    assert verdict.key == b"acme:u1"


def test_a_megabyte_unit_id_is_refused_naming_the_field_with_a_bounded_key() -> None:
    verdict = validate_event(0, outcome(unit_id="u" * MIB), "acme", NOW, BIG_CONFIG)
    assert isinstance(verdict, RejectedEvent)
    assert [e.field for e in verdict.errors] == ["unit_id"]
    assert verdict.key is not None and verdict.key.startswith(b"acme:sha256-")
    assert len(verdict.key) < 100


@pytest.mark.parametrize("depth", [17, 300, 1000, 10_000])
@pytest.mark.parametrize("field", ["properties", "value", "unit_id"])
def test_a_deeply_nested_field_is_refused_by_name_without_recursion(depth: int, field: str) -> None:
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    verdict = validate_event(0, outcome(**{field: {"k": nested}}), "acme", NOW, BIG_CONFIG)
    assert isinstance(verdict, RejectedEvent)
    assert [e.field for e in verdict.errors] == [field]
    assert "deeper than 16" in verdict.errors[0].reason


@pytest.mark.parametrize(
    ("properties", "said"),
    [
        ({f"k{i}": i for i in range(101)}, "101 keys"),
        ({"k" * 129: 1}, "129 characters"),
        ({"a": {"b": ["s" * 1025]}}, "'a.b[0]' is a string of 1025 characters"),
        ({"a": "x" * 17_000}, "the limit is 16384"),
    ],
)
def test_properties_beyond_their_limits_are_refused_naming_them(
    properties: dict[str, Any], said: str
) -> None:
    refused = validate_event(0, outcome(properties=properties), "acme", NOW, BIG_CONFIG)
    assert isinstance(refused, RejectedEvent)
    assert [e.field for e in refused.errors] == ["properties"]
    assert said in refused.errors[0].reason


def test_attributes_are_bounded_like_properties() -> None:
    refused = validate_event(0, exposure(attributes={"k" * 200: "v"}), "acme", NOW, BIG_CONFIG)
    assert isinstance(refused, RejectedEvent)
    assert [e.field for e in refused.errors] == ["attributes"]


def test_an_oversized_event_names_its_largest_field() -> None:
    refused = rejected(outcome(properties={"a": "x" * 900, "b": "y" * 900}, event="e" * 100))
    assert refused.errors[0].field == "properties"
    assert "limit is 2000" in refused.errors[0].reason


def test_an_event_without_an_id_gets_the_same_id_every_time_it_is_sent() -> None:
    first = validate_event(0, outcome(), "acme", NOW, CONFIG)
    # A retry, received later, with the timestamp written in another zone.
    later = NOW + timedelta(seconds=30)
    retried = validate_event(
        5,
        outcome(timestamp=NOW.astimezone(timezone(timedelta(hours=2))).isoformat()),
        "acme",
        later,
        CONFIG,
    )
    other_tenant = validate_event(0, outcome(), "globex", NOW, CONFIG)
    other_value = validate_event(0, outcome(value=9.75), "acme", NOW, CONFIG)
    assert isinstance(first, AcceptedEvent) and isinstance(retried, AcceptedEvent)
    assert isinstance(other_tenant, AcceptedEvent) and isinstance(other_value, AcceptedEvent)
    assert first.event.event_id == retried.event.event_id
    assert first.event.event_id.version == 5
    assert first.event.event_id != other_tenant.event.event_id
    assert first.event.event_id != other_value.event.event_id
    given = str(uuid.uuid4())
    explicit = validate_event(0, outcome(event_id=given), "acme", NOW, CONFIG)
    assert isinstance(explicit, AcceptedEvent) and str(explicit.event.event_id) == given


def test_an_import_takes_events_older_than_live_ingest_but_not_from_another_century() -> None:
    ten_years = 3653 * 24 * 3600.0
    old = outcome(timestamp=(NOW - timedelta(days=400)).isoformat())
    assert isinstance(validate_event(0, old, "acme", NOW, CONFIG), RejectedEvent)
    assert isinstance(
        validate_event(0, old, "acme", NOW, CONFIG, max_past_s=ten_years), AcceptedEvent
    )
    for timestamp in [NOW - timedelta(days=3660), NOW + timedelta(days=1)]:
        refused = validate_event(
            0, outcome(timestamp=timestamp.isoformat()), "acme", NOW, CONFIG, max_past_s=ten_years
        )
        assert isinstance(refused, RejectedEvent)
        assert refused.errors[0].field == "timestamp"
