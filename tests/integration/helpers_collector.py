"""The collector as a process (``python -m services.collector --port 0``, waiting for
``collector ready at URL``), reading a topic to its end, and events as clients send them;
shared by the collector, fuzz, import, isolation, outage, sink and SDK delivery tests."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, TopicPartition

from schemas.events import ExposureEvent, OutcomeEvent, parse_event_message
from tests.integration.helpers_services import KEY_NOT_KNOWN_YET, ServiceProcess
from tests.waiting import wait_until


class CollectorProcess(ServiceProcess):
    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            "services.collector", "collector", [], log_path, {**os.environ, **(env or {})}
        )

    def post(self, body: Any, key: str | None, raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if raw is not None:
            return httpx.post(f"{self.url}/v1/events", content=raw, headers=headers, timeout=30)
        return httpx.post(f"{self.url}/v1/events", json=body, headers=headers, timeout=30)

    def wait_until_key_known(self, key: str, timeout: float = 30.0) -> None:
        """The collector learns keys from the control topic; wait until it knows ``key``."""
        wait_until(
            lambda: self.post(b"", key, raw=b"").status_code not in KEY_NOT_KNOWN_YET,
            timeout=timeout,
            what=lambda: f"key never known:\n{self.log_tail()}",
        )


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on ``topic`` now, all partitions."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        messages: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < end[p] for p in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                messages += [(record.key, record.value) for record in records]
        return messages
    finally:
        consumer.close()


def read_events(bootstrap: str, topic: str) -> list[tuple[int, ExposureEvent | OutcomeEvent]]:
    """Every event on ``topic`` now with its partition, batch messages expanded."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        events: list[tuple[int, ExposureEvent | OutcomeEvent]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(p) < end[p] for p in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    events += [(tp.partition, e) for e in parse_event_message(record.value)]
        return events
    finally:
        consumer.close()


def outcome(unit: str, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "outcome",
        "event_id": str(uuid.uuid4()),
        "unit_id": unit,
        "timestamp": datetime.now(UTC).isoformat(),
        "event": "purchase",
        "value": 2.5,
        **overrides,
    }


def exposure(unit: str) -> dict[str, Any]:
    return {
        "type": "exposure",
        "event_id": str(uuid.uuid4()),
        "unit_id": unit,
        "timestamp": datetime.now(UTC).isoformat(),
        "experiment_key": "checkout",
        "variant_key": "treatment",
    }
