"""One invalid event, three places that refuse it: the SDK (``InvalidInputError``), the
collector (its per-event errors) and the stream worker (its dead letter) name the same
fields with the same reasons, in the words of ``schemas.errors``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from liftstream.client import LiftstreamClient
from liftstream.errors import InvalidInputError
from schemas.deadletter import DeadLetter
from schemas.errors import FieldError
from services.collector.config import CollectorConfig
from services.collector.validation import RejectedEvent, validate_event
from services.stream.intake import SourceMessage, decode_event
from tests.unit.fake_producer import RecordingProducer

NOW = datetime.now(UTC).replace(microsecond=0)
WHEN = NOW - timedelta(minutes=5)

CASES = {
    "event name": ("add to cart!", 1.0),
    "value beyond its bound": ("purchase", 1e300),
    "both": ("", 1e300),
}


def _sdk(event: str, value: float) -> list[FieldError]:
    client = LiftstreamClient(
        "acme", bootstrap="unused:9092", namespace="ns1", producer=RecordingProducer()
    )
    with client, pytest.raises(InvalidInputError) as raised:
        client.track("user-1", event, value=value, timestamp=WHEN)
    return raised.value.problems


def _collector(event: str, value: float) -> list[FieldError]:
    item = {
        "type": "outcome",
        "unit_id": "user-1",
        "timestamp": WHEN.isoformat(),
        "event": event,
        "value": value,
    }
    verdict = validate_event(0, item, "acme", NOW, CollectorConfig())
    assert isinstance(verdict, RejectedEvent)
    return verdict.errors


def _stream(event: str, value: float) -> list[FieldError]:
    payload = {
        "type": "outcome",
        "tenant_id": "acme",
        "unit_id": "user-1",
        "timestamp": WHEN.isoformat(),
        "event": event,
        "value": value,
    }
    message = SourceMessage("ns.outcomes", 0, 7, b"acme:user-1", orjson.dumps(payload))
    letter = decode_event(message, "outcome")
    assert isinstance(letter, DeadLetter)
    return letter.errors


@pytest.mark.parametrize("case", CASES)
def test_sdk_collector_and_stream_word_an_invalid_event_identically(case: str) -> None:
    event, value = CASES[case]
    sdk = _sdk(event, value)
    assert _collector(event, value) == sdk
    assert _stream(event, value) == sdk
    fields = [problem.field for problem in sdk]
    assert fields == {"event name": ["event"], "value beyond its bound": ["value"]}.get(
        case, ["event", "value"]
    )
    assert all(problem.reason and "outcome." not in problem.reason for problem in sdk)
