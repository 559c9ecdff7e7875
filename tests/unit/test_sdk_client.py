"""The client: what it sends where, what it refuses (naming the field), failed deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from liftstream.assignment import assign
from liftstream.client import LiftstreamClient
from liftstream.errors import DeliveryError
from liftstream.events import Exposure, Outcome
from schemas import Experiment, OutcomeEvent, parse_event
from schemas.partitioning import partition_for
from tests.unit.fake_producer import RecordingProducer

EXPERIMENT = Experiment.model_validate(
    {
        "key": "checkout-button",
        "version": 3,
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"name": "conversion", "event": "purchase", "type": "conversion"}],
    }
)


@pytest.fixture
def producer() -> RecordingProducer:
    return RecordingProducer()


@pytest.fixture
def client(producer: RecordingProducer) -> LiftstreamClient:
    return LiftstreamClient("acme", bootstrap="unused:9092", namespace="ns1", producer=producer)


def test_expose_sends_the_assigned_variant_keyed_by_tenant_and_unit(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    exposure = client.expose(EXPERIMENT, "user-7", attributes={"country": "NL"})
    assert exposure is not None
    assert exposure.variant_key == assign(EXPERIMENT, "user-7")
    assert exposure.experiment_version == 3
    client.flush()
    [(topic, event, partition)] = producer.events()
    assert topic == "ns1.exposures"
    assert partition == partition_for(b"acme:user-7", producer.partitions)
    assert parse_event(json.dumps(event)) == exposure.to_model()


def test_a_unit_outside_the_traffic_is_neither_exposed_nor_logged(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    small = EXPERIMENT.model_copy(update={"traffic": 1.0})
    outside = next(f"user-{i}" for i in range(1000) if assign(small, f"user-{i}") is None)
    assert client.assign(small, outside) is None
    assert client.expose(small, outside) is None
    client.flush()
    assert producer.messages == []


def test_an_explicit_variant_is_logged_as_given(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    exposure = client.expose(EXPERIMENT, "qa-tester", variant="treatment")
    assert exposure is not None and exposure.variant_key == "treatment"


def test_an_unknown_variant_is_refused_with_the_field_and_the_choices(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    with pytest.raises(ValueError, match=r"variant_key: 'blue' is not a variant.*control"):
        client.expose(EXPERIMENT, "user-1", variant="blue")
    client.flush()
    assert producer.messages == []


def test_track_sends_the_outcome_to_the_outcomes_topic(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    outcome = client.track(
        "user-7", "purchase", value=31.5, properties={"sku": "A"}, timestamp=when
    )
    client.flush()
    [(topic, event, partition)] = producer.events()
    assert (topic, partition) == ("ns1.outcomes", partition_for(b"acme:user-7", 4))
    decoded = parse_event(json.dumps(event))
    assert isinstance(decoded, OutcomeEvent)
    assert decoded == outcome.to_model()
    assert (decoded.event, decoded.value, decoded.timestamp) == ("purchase", 31.5, when)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.track("user-1", "no spaces allowed"), "event"),
        (lambda c: c.track("user-1", "purchase", value=float("nan")), "value"),
        (lambda c: c.track("", "purchase"), "unit_id"),
        (lambda c: c.track("user-1", "purchase", timestamp=datetime(2024, 1, 1)), "timestamp"),
        (lambda c: c.expose(EXPERIMENT, "user-1", attributes={"plan": ["a", "b"]}), "attributes"),
    ],
)
def test_invalid_calls_raise_a_value_error_naming_the_field(
    client: LiftstreamClient,
    producer: RecordingProducer,
    call: Callable[[LiftstreamClient], object],
    field: str,
) -> None:
    with pytest.raises(ValueError, match=rf"(?m)^  {field}[.:]"):
        call(client)
    client.flush()
    assert producer.messages == []


def test_an_invalid_tenant_is_refused_at_construction(producer: RecordingProducer) -> None:
    with pytest.raises(ValueError, match=r"tenant_id: should be lower-case"):
        LiftstreamClient("Acme Corp", bootstrap="unused:9092", producer=producer)


def test_flush_reports_events_kafka_did_not_store(
    client: LiftstreamClient, producer: RecordingProducer
) -> None:
    client.track("user-1", "purchase")
    client.track("user-2", "purchase")
    producer.failure = TimeoutError("broker gone")
    with pytest.raises(DeliveryError, match=r"2 event\(s\) were not stored.*broker gone"):
        client.flush()
    producer.failure = None
    client.track("user-3", "purchase")
    client.flush()  # the failures were reported once; later events are fine


def test_the_context_manager_flushes_and_closes_and_a_closed_client_refuses_events(
    producer: RecordingProducer,
) -> None:
    with LiftstreamClient("acme", bootstrap="unused:9092", producer=producer) as client:
        sent = client.track("user-1", "page_view")
    assert isinstance(sent, Outcome)
    assert producer.closed and producer.pending == []
    with pytest.raises(RuntimeError, match="closed"):
        client.track("user-1", "page_view")


def test_namespace_defaults_to_the_environment(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTSTREAM_NAMESPACE", "staging")
    client = LiftstreamClient("acme", bootstrap="unused:9092", producer=producer)
    exposure = client.expose(EXPERIMENT, "user-1")
    assert isinstance(exposure, Exposure)
    client.flush()
    assert producer.messages[0][0] == "staging.exposures"


def test_two_equal_track_calls_are_two_events(client: LiftstreamClient) -> None:
    """An event without an id would be named by its content; a call is one occurrence,
    so the SDK gives each its own id (its transports keep it through retries)."""
    from datetime import UTC, datetime
    from types import MappingProxyType

    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = client.track("u1", "purchase", value=5.0, timestamp=at)
    second = client.track("u1", "purchase", value=5.0, timestamp=at)
    # Arguments the fast path leaves to the contract (a mapping that is not a dict).
    props = MappingProxyType({"plan": "pro"})
    third = client.track("u1", "purchase", value=5.0, properties=props, timestamp=at)
    fourth = client.track("u1", "purchase", value=5.0, properties=props, timestamp=at)
    ids = [uuid.UUID(e.event_id) for e in (first, second, third, fourth)]
    assert len(set(ids)) == 4
    assert {i.version for i in ids} == {4}
