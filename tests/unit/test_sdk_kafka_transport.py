"""The Kafka transport: per-partition batches in order, bounded sizes, a bounded queue
that drops the oldest events (counted, reported by ``flush``), a caller that never waits."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from liftstream.errors import DeliveryError
from liftstream.events import fast_outcome
from liftstream.transport import KafkaTransport
from schemas.partitioning import partition_for
from schemas.topics import TopicCatalog
from tests.unit.fake_producer import RecordingProducer, SendFuture

TOPICS = TopicCatalog(namespace="ns")


def outcome(unit: str, value: float = 1.0, properties: dict[str, Any] | None = None) -> Any:
    event = fast_outcome("acme", unit, "purchase", value, properties, None)
    assert event is not None
    return event


def test_events_go_in_per_partition_batches_keeping_each_units_order() -> None:
    producer = RecordingProducer(partitions=4)
    transport = KafkaTransport(producer, TOPICS, "test:9092", max_batch_events=7)
    for n in range(300):
        transport.send(outcome(f"user-{n % 40}", value=float(n)))
    transport.flush(5)
    per_unit: dict[str, list[float]] = defaultdict(list)
    for topic, _key, value, partition in producer.messages:
        batch = json.loads(value or b"")
        assert topic == "ns.outcomes" and isinstance(batch, list) and 1 <= len(batch) <= 7
        for event in batch:
            key = f"{event['tenant_id']}:{event['unit_id']}".encode()
            assert partition_for(key, 4) == partition
            per_unit[event["unit_id"]].append(event["value"])
    assert sum(len(v) for v in per_unit.values()) == 300
    for unit, seen in per_unit.items():
        assert seen == sorted(seen), unit
    assert transport.acked == 300
    transport.close(1)


def test_a_batch_stays_under_its_byte_limit() -> None:
    producer = RecordingProducer(partitions=1)
    transport = KafkaTransport(producer, TOPICS, "test:9092", max_batch_bytes=20_000)
    for n in range(100):
        transport.send(outcome("user-1", properties={"text": "x" * 1000, "n": n}))
    transport.flush(5)
    sizes = [len(value or b"") for _, _, value, _ in producer.messages]
    assert len(sizes) > 5 and max(sizes) <= 20_000
    numbers = [e["properties"]["n"] for _, e, _ in producer.events()]
    assert numbers == list(range(100))
    transport.close(1)


class _StalledProducer(RecordingProducer):
    """A producer whose ``send`` blocks until released (a broker that does not answer)."""

    def __init__(self) -> None:
        super().__init__(partitions=2)
        self.release = threading.Event()
        self.entered = threading.Event()

    def send(self, *args: Any, **kwargs: Any) -> SendFuture:
        self.entered.set()
        self.release.wait(10)
        return super().send(*args, **kwargs)


def test_a_full_queue_drops_the_oldest_events_and_flush_reports_them() -> None:
    producer = _StalledProducer()
    transport = KafkaTransport(producer, TOPICS, "test:9092", max_queue_events=10, linger_s=0)
    transport.send(outcome("first", 0.0))
    assert producer.entered.wait(5)  # the thread is stuck sending the first event
    started = time.perf_counter()
    for n in range(1, 26):
        transport.send(outcome("user-1", float(n)))
    assert time.perf_counter() - started < 0.5  # the caller never waited
    assert transport.dropped == 15
    producer.release.set()
    with pytest.raises(DeliveryError, match=r"15 event\(s\) were dropped: the queue was full"):
        transport.flush(5)
    values = [event["value"] for _, event, _ in producer.events()]
    assert values == [0.0, *[float(n) for n in range(16, 26)]]  # the newest were kept
    transport.flush(5)  # reported once
    transport.close(1)


def test_failed_sends_are_reported_by_flush() -> None:
    producer = RecordingProducer()
    transport = KafkaTransport(producer, TOPICS, "test:9092")
    for n in range(5):
        transport.send(outcome(f"user-{n}"))
    producer.failure = TimeoutError("broker gone")
    with pytest.raises(DeliveryError, match=r"5 event\(s\) were not stored.*broker gone"):
        transport.flush(5)
    transport.close(1)
