"""What the client needs of a transport, and the Kafka one (the default).

A transport takes validated events and delivers them: ``send`` never waits for the
network; ``flush`` waits for what was sent and raises ``DeliveryError`` if any event
since the last flush was not stored; ``close`` flushes and releases its resources.
``liftstream.http_transport.HttpTransport`` is the other implementation.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from liftstream.errors import DeliveryError
from schemas.events import ExposureEvent, OutcomeEvent
from schemas.topics import TopicCatalog

log = logging.getLogger(__name__)


class EventTransport(Protocol):
    def send(self, event: ExposureEvent | OutcomeEvent) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class EventProducer(Protocol):
    """What the Kafka transport needs of a producer (kafka-python's ``KafkaProducer`` fits)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        """Queue one record; returns a future with ``add_errback``."""

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class KafkaTransport:
    """Events straight to the namespace topics, keyed ``tenant:unit``."""

    def __init__(self, producer: EventProducer, topics: TopicCatalog, bootstrap: str) -> None:
        self.producer = producer
        self.topics = topics
        self.bootstrap = bootstrap
        self._failures: list[BaseException] = []
        self._failures_lock = threading.Lock()

    def send(self, event: ExposureEvent | OutcomeEvent) -> None:
        topic = self.topics.exposures if isinstance(event, ExposureEvent) else self.topics.outcomes
        future = self.producer.send(topic, key=event.partition_key, value=event.to_json())
        future.add_errback(self._record_failure)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until Kafka acknowledged every event; ``DeliveryError`` if any was not stored."""
        self.producer.flush(timeout)
        with self._failures_lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(
                f"{len(failures)} event(s) were not stored by Kafka at {self.bootstrap}; "
                f"first error: {failures[0]!r}"
            )

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self.producer.close(timeout)

    def _record_failure(self, error: BaseException) -> None:
        log.error("Kafka did not store an event: %r", error)
        with self._failures_lock:
            self._failures.append(error)
