"""Messages from the event topics become events, or dead letters naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent, OutcomeEvent
from services.stream.intake import SourceMessage, decode_event

WHEN = datetime(2024, 3, 1, 12, tzinfo=UTC)


def message(
    value: bytes | None, key: bytes | None = b"acme:u1", topic: str = "t.outcomes"
) -> SourceMessage:
    return SourceMessage(topic=topic, partition=2, offset=41, key=key, value=value)


def outcome_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = json.loads(
        OutcomeEvent(tenant_id="acme", unit_id="u1", timestamp=WHEN, event="purchase").to_json()
    )
    body.update(overrides)
    return body


def dead_letter(value: bytes | None, **kwargs: object) -> DeadLetter:
    result = decode_event(message(value, **kwargs), "outcome")  # type: ignore[arg-type]
    assert isinstance(result, DeadLetter), result
    return result


def test_valid_outcome_is_accepted() -> None:
    result = decode_event(message(json.dumps(outcome_body(value=2.5)).encode()), "outcome")
    assert isinstance(result, OutcomeEvent)
    assert result.value == 2.5


def test_bad_json_is_refused_with_its_payload_and_position() -> None:
    refused = dead_letter(b'{"tenant_id": "acme",')
    assert refused.stage == "stream"
    assert (refused.source_topic, refused.source_partition, refused.source_offset) == (
        "t.outcomes",
        2,
        41,
    )
    assert "Invalid JSON" in refused.reason
    assert refused.payload == '{"tenant_id": "acme",'


def test_undecodable_bytes_are_kept_with_replacement_characters() -> None:
    refused = dead_letter(b"\xff\xfe not json")
    assert refused.payload.startswith("\ufffd\ufffd")


def test_a_json_array_is_refused_as_not_an_object() -> None:
    assert "object" in dead_letter(b"[1, 2]").reason


def test_missing_field_is_named() -> None:
    body = outcome_body()
    del body["event"]
    refused = dead_letter(json.dumps(body).encode())
    assert [error.field for error in refused.errors] == ["event"]
    assert refused.reason.startswith("event:")


def test_wrong_type_is_named_without_the_union_tag() -> None:
    refused = dead_letter(json.dumps(outcome_body(value="a lot")).encode())
    assert [error.field for error in refused.errors] == ["value"]
    assert "number" in refused.reason


def test_unknown_event_type_is_named() -> None:
    refused = dead_letter(json.dumps(outcome_body(type="impression")).encode())
    assert [error.field for error in refused.errors] == ["type"]


def test_exposure_on_the_outcomes_topic_is_refused() -> None:
    exposure = ExposureEvent(
        tenant_id="acme", unit_id="u1", timestamp=WHEN, experiment_key="e", variant_key="a"
    )
    refused = dead_letter(exposure.to_json())
    assert refused.errors[0].field == "type"
    assert "outcomes topic" in refused.reason


@pytest.mark.parametrize("key", [b"other:u1", b"acme:u2", None])
def test_key_that_is_not_tenant_and_unit_is_refused(key: bytes | None) -> None:
    refused = dead_letter(json.dumps(outcome_body()).encode(), key=key)
    assert refused.errors[0].field == "key"
    assert "acme:u1" in refused.reason


def test_empty_message_is_refused() -> None:
    assert "empty" in dead_letter(None).reason


def test_reason_is_one_line() -> None:
    body = outcome_body(value="x", timestamp="yesterday")
    del body["unit_id"]
    refused = dead_letter(json.dumps(body).encode())
    assert "\n" not in refused.reason
    assert {"value", "timestamp", "unit_id"} <= {error.field for error in refused.errors}
