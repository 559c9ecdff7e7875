"""Decoding batch bodies and validating events one by one (pure, no broker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.events import ExposureEvent, OutcomeEvent
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
    assert isinstance(verdict.event, ExposureEvent)
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
    assert isinstance(verdict.accepted[0].event, OutcomeEvent)
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
def test_a_dead_letter_keeps_at_most_the_event_limit_of_an_oversized_payload(item: Any) -> None:
    refused = rejected(item)
    assert len(refused.payload) < CONFIG.max_event_bytes + 100
    assert "truncated" in refused.payload
