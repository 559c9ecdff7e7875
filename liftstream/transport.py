"""What the client needs of a transport, and the Kafka one (the default).

A transport takes validated events and delivers them: ``send`` never waits for the
network; ``flush`` waits for what was sent and raises ``DeliveryError`` if any event
since the last flush was not stored; ``close`` flushes and releases its resources.
``liftstream.http_transport.HttpTransport`` is the other implementation.

``KafkaTransport``: ``send`` appends the event to a bounded in-memory queue (when full,
the oldest queued event is dropped and counted) and returns. A background thread takes
what is queued (after ``linger_s`` when the queue holds less than a batch), groups the
events by topic and by the partition Kafka's default partitioner gives their
``tenant:unit`` key (``schemas.partitioning``), encodes each group as one JSON array
(msgspec, one call) of at most ``max_batch_events`` events and ``max_batch_bytes``, and
hands it to kafka-python's producer (acks=all, idempotent: a partition's messages stay in
order through retries) for that partition. A unit's events therefore stay in one
partition and in their order, and the stream pays its per-message cost once per batch.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

import msgspec

from liftstream.errors import DeliveryError, InvalidInputError, PlatformUnavailableError
from liftstream.events import Outcome, SdkEvent
from schemas.errors import FieldError
from schemas.partitioning import partition_for
from schemas.topics import TopicCatalog

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_EVENTS = 200_000
DEFAULT_MAX_BATCH_EVENTS = 1_000
#: Under kafka-python's default ``max_request_size`` (1 MiB) with room to spare.
DEFAULT_MAX_BATCH_BYTES = 512 * 1024
DEFAULT_LINGER_S = 0.005
#: How long ``close()`` (and interpreter exit) waits for delivery by default.
CLOSE_TIMEOUT_S = 10.0
#: Most events the thread takes from the queue per round.
_DRAIN_MAX = 50_000


class EventTransport(Protocol):
    def send(self, event: SdkEvent) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class EventProducer(Protocol):
    """What the Kafka transport needs of a producer (kafka-python's ``KafkaProducer`` fits)."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> Any:
        """Queue one record; returns a future with ``add_callback``/``add_errback``."""

    def partitions_for(self, topic: str) -> set[int]: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class KafkaTransport:
    """Events straight to the namespace topics in per-partition batches (see above)."""

    def __init__(
        self,
        producer: EventProducer,
        topics: TopicCatalog,
        bootstrap: str,
        *,
        max_queue_events: int = DEFAULT_MAX_QUEUE_EVENTS,
        max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        linger_s: float = DEFAULT_LINGER_S,
    ) -> None:
        for name, number in (
            ("max_queue_events", max_queue_events),
            ("max_batch_events", max_batch_events),
            ("max_batch_bytes", max_batch_bytes),
        ):
            if number < 1:
                raise InvalidInputError(
                    "invalid Kafka transport", [FieldError(field=name, reason="must be >= 1")]
                )
        if linger_s < 0:
            raise InvalidInputError(
                "invalid Kafka transport", [FieldError(field="linger_s", reason="must be >= 0")]
            )
        self.producer = producer
        self.topics = topics
        self.bootstrap = bootstrap
        self.max_queue_events = max_queue_events
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self._queue: deque[SdkEvent] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._draining = False
        self._closing = False
        self._done = threading.Condition()
        self._lock = threading.Lock()
        self._partitions: dict[str, int] = {}
        self._encoder = msgspec.json.Encoder()
        self.sent = self.acked = self.failed = self.dropped = 0
        self._reported_failed = self._reported_dropped = 0
        self._first_error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="liftstream-kafka", daemon=True)
        self._thread.start()
        # Events still queued when the interpreter exits are sent (the thread is a daemon).
        atexit.register(self._close_at_exit)

    def send(self, event: SdkEvent) -> None:
        """Queue ``event`` (never waits); drops the oldest queued event if the queue is full."""
        if self._closing:
            raise PlatformUnavailableError("the Kafka transport is closed")
        queue = self._queue
        if len(queue) >= self.max_queue_events:
            try:
                queue.popleft()
                with self._lock:
                    self.dropped += 1
            except IndexError:  # the thread took everything meanwhile
                pass
        queue.append(event)
        self.sent += 1
        if self._idle:
            self._idle = False
            self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until Kafka acknowledged every event sent so far (``timeout`` s; None: no
        limit); ``DeliveryError`` if any since the last flush was not stored or dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._queue or self._draining:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._done.wait(0.05 if remaining is None else min(0.05, remaining))
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.producer.flush(remaining)
        with self._lock:
            failed = self.failed - self._reported_failed
            dropped = self.dropped - self._reported_dropped
            self._reported_failed, self._reported_dropped = self.failed, self.dropped
            first, self._first_error = self._first_error, None
        unsent = len(self._queue)
        if failed or dropped or unsent:
            parts = []
            if failed:
                parts.append(f"{failed} event(s) were not stored by Kafka at {self.bootstrap}")
            if dropped:
                parts.append(
                    f"{dropped} event(s) were dropped: the queue was full "
                    f"({self.max_queue_events} events)"
                )
            if unsent:
                parts.append(f"{unsent} event(s) are still queued after {timeout}s")
            detail = f"; first error: {first!r}" if first is not None else ""
            raise DeliveryError("; ".join(parts) + detail)

    def close(self, timeout: float | None = None) -> None:
        """Flush (at most ``timeout``, default ``CLOSE_TIMEOUT_S``), then stop the thread
        and close the producer; also run at interpreter exit. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        try:
            self.flush(CLOSE_TIMEOUT_S if timeout is None else timeout)
        finally:
            self._closing = True
            self._wake.set()
            self._thread.join(5.0)
            self.producer.close(timeout)

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except DeliveryError as error:
            log.warning("at exit: %s", error)

    # The background thread.

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._idle = True
                if not queue:  # checked again: a send may have come before _idle was set
                    self._wake.wait(0.1)
                self._wake.clear()
                self._idle = False
                continue
            if self.linger_s and len(queue) < self.max_batch_events and not self._closing:
                time.sleep(self.linger_s)
            self._draining = True
            events: list[SdkEvent] = []
            try:
                count = min(len(queue), _DRAIN_MAX)
                events = [queue.popleft() for _ in range(count)]
                self._send_grouped(events)
            except Exception as error:  # never let the thread die with events unsent
                log.exception("sending a batch of events failed")
                self._failed(len(events), error)
            finally:
                self._draining = False
                with self._done:
                    self._done.notify_all()

    def _send_grouped(self, events: list[SdkEvent]) -> None:
        groups: dict[tuple[str, int], list[SdkEvent]] = {}
        exposures, outcomes = self.topics.exposures, self.topics.outcomes
        for event in events:
            topic = outcomes if type(event) is Outcome else exposures
            count = self._partitions.get(topic) or self._partition_count(topic)
            place = (topic, partition_for(event.partition_key, count))
            group = groups.get(place)
            if group is None:
                groups[place] = [event]
            else:
                group.append(event)
        for (topic, partition), group in groups.items():
            for start in range(0, len(group), self.max_batch_events):
                self._send_batch(topic, partition, group[start : start + self.max_batch_events])

    def _send_batch(self, topic: str, partition: int, events: list[SdkEvent]) -> None:
        value = self._encoder.encode(events)
        if len(value) > self.max_batch_bytes and len(events) > 1:
            half = len(events) // 2
            self._send_batch(topic, partition, events[:half])
            self._send_batch(topic, partition, events[half:])
            return
        size = len(events)
        try:
            future = self.producer.send(topic, value=value, partition=partition)
        except Exception as error:
            self._failed(size, error)
            return
        future.add_callback(lambda _metadata: self._acked(size))
        future.add_errback(lambda error: self._failed(size, error))

    def _partition_count(self, topic: str) -> int:
        partitions = self.producer.partitions_for(topic)
        if not partitions:
            raise PlatformUnavailableError(f"topic {topic} has no partitions (does it exist?)")
        self._partitions[topic] = len(partitions)
        return len(partitions)

    def _acked(self, count: int) -> None:
        with self._lock:
            self.acked += count

    def _failed(self, count: int, error: BaseException) -> None:
        log.error("Kafka did not store %d event(s): %r", count, error)
        with self._lock:
            self.failed += count
            if self._first_error is None:
                self._first_error = error
