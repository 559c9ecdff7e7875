"""The event contract's limits and ids, at the model: what every reader parses the same way
(collector, stream worker's fallback, results loader)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from schemas.events import EVENT_ID_NAMESPACE, OutcomeEvent, content_event_id, parse_event

ENVELOPE = (
    b'{"type": "outcome", "tenant_id": "acme", "unit_id": "u", '
    b'"timestamp": "2026-01-01T00:00:00Z", "event": "e"'
)


@pytest.mark.parametrize("depth", [17, 150, 255, 1000, 100_000])
def test_deep_properties_are_a_validation_error_never_a_recursion_error(depth: int) -> None:
    body = ENVELOPE + b', "properties": {"k": ' + b"[" * depth + b"]" * depth + b"}}"
    with pytest.raises(ValidationError) as refused:
        parse_event(body)
    error = refused.value.errors()[0]
    # Up to pydantic-core's own JSON recursion limit (~200) the model names the field;
    # deeper, its parser refuses the document. Either way: a per-message refusal.
    if depth < 200:
        assert error["loc"] == ("outcome", "properties")
        assert "deeper than 16" in error["msg"]
    else:
        assert error["type"] == "json_invalid" and "recursion limit" in error["msg"]


def test_an_event_without_an_id_is_named_by_its_content_and_keeps_the_id_it_was_given() -> None:
    derived = parse_event(ENVELOPE + b"}")
    assert derived.event_id == content_event_id(derived)
    assert derived.event_id == uuid.uuid5(
        EVENT_ID_NAMESPACE,
        '{"event":"e","properties":{},"schema_version":1,"tenant_id":"acme",'
        '"timestamp":"2026-01-01T00:00:00Z","type":"outcome","unit_id":"u","value":1.0}',
    )
    # Written and read back (the stream, the results loader): the same id, kept as given.
    again = parse_event(derived.to_json())
    assert again.event_id == derived.event_id and "event_id" in again.model_fields_set
    given = uuid.uuid4()
    explicit = OutcomeEvent(
        event_id=given, tenant_id="acme", unit_id="u", timestamp=derived.timestamp, event="e"
    )
    assert explicit.event_id == given
