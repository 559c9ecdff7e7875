"""Where accepted events and dead letters go: Kafka, through a few idempotent aiokafka producers.

``send_all`` returns only once the broker acknowledged every record (acks=all), or raises:

- ``SinkUnavailable``: a broker outage (no acknowledgement within the timeout, the broker
  unreachable, a producer that cannot start). The caller must not acknowledge anything
  (some records may still land later: clients retry with the same ``event_id`` and
  everything downstream de-duplicates by it); the API answers 503 with Retry-After.
- ``RecordsRefused``: the broker refused records for their content (too large, corrupt):
  retrying them cannot succeed, so it is that request's error (the API answers 422),
  never an outage.

Producers recover: a producer whose delivery failed with any Kafka error is closed (in
the background, its other records still flush) and replaced by a fresh one, and the
callback ``on_replaced`` is told why (the collector counts it in Prometheus). An
idempotent producer that lost a batch keeps failing every later one
(``OutOfOrderSequenceNumber``), which once answered every tenant 503 for good. A request
whose delivery failed with an error that is neither an outage nor about its content (a
sequence or producer-state error) is sent once more on the fresh producer.

``ready`` says whether the sink can write now: every producer started, no delivery failed
in the last ``RECOVERY_S`` without one succeeding since, and the broker answers a
metadata request. Error messages name no address or setting; the log has the detail.

The producers are started lazily and restarted after a failed start, so the collector
comes up even while the broker is down. An aiokafka producer keeps one produce request in
flight per broker, so a request's records go whole (in order) to the producer with the
fewest records awaiting the broker: a small batch does not queue behind another tenant's
big one. A client that waits for its answer before sending the next batch keeps its
order (the first is written by then); concurrent requests never had an order.
Records are grouped by partition (compiled, ``schemas.partitioning``) and each
partition's record batch is built after a yield to the event loop, so a big batch does
not hold up other tenants' requests (``fairness.py``); the batches are then handed to the
producer together, with no linger: they leave at once, in one produce request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from schemas.limits import MAX_BATCH_EVENTS
from schemas.partitioning import group_by_partition

log = logging.getLogger(__name__)

#: topic, key, value: the value's JSON, or on a batched topic an event struct (msgspec),
#: encoded with the rest of its partition's events in one call (``as_batch_messages``).
Record = tuple[str, bytes | None, bytes | msgspec.Struct]
#: Producers of a sink. A few suffice: a request waits only when every one is busy.
PRODUCERS = 3
#: Largest batch message (a JSON array of one partition's events) the sink writes.
BATCH_MESSAGE_BYTES = 256 * 1024
#: After a failed delivery the sink is not ready for this long, unless one succeeds.
RECOVERY_S = 10.0
_PARTITIONER = DefaultPartitioner()
_ENCODER = msgspec.json.Encoder()
#: The broker refused the records for what they are: sending them again cannot help.
CONTENT_ERRORS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


class SinkError(Exception):
    """The records were not all acknowledged; the message says why, without addresses."""


class SinkUnavailable(SinkError):
    """A broker outage: nothing acknowledged in time, or the broker cannot be reached."""


class RecordsRefused(SinkError):
    """The broker refused records for their content; retrying them cannot succeed."""


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_all(self, records: list[Record], timeout_s: float) -> None: ...

    async def ready(self, timeout_s: float) -> str | None:
        """None if the sink can write now, else why not (no address in it)."""
        ...


def is_outage(error: BaseException) -> bool:
    """A failure the broker's state explains (down, unreachable, slow), not the records."""
    return isinstance(error, KafkaConnectionError | KafkaTimeoutError | OSError) or bool(
        getattr(error, "retriable", False)
    )


@dataclass
class _Slot:
    number: int
    producer: AIOKafkaProducer | None = None
    #: Records handed to this slot's producers and not yet acknowledged (or failed).
    pending: int = 0
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)


class KafkaSink:
    """``producers`` idempotent producers; each request goes whole to the least busy one."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "liftstream-collector",
        producers: int = PRODUCERS,
        on_replaced: Callable[[str], None] = lambda reason: None,
        monotonic: Callable[[], float] = time.monotonic,
        batched_topics: frozenset[str] = frozenset(),
    ) -> None:
        """``batched_topics``: topics whose records are written as batch messages, one
        JSON array per partition (the event topics)."""
        if producers < 1:
            raise ValueError(f"producers must be at least 1, not {producers}")
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._slots = [_Slot(number) for number in range(producers)]
        self._on_replaced = on_replaced
        self._monotonic = monotonic
        self._failed_at: float | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._batched_topics = batched_topics

    async def start(self) -> None:
        """Try to connect now; a broker that is down is not fatal (retried on demand)."""
        with contextlib.suppress(SinkUnavailable):  # logged by _ready
            await asyncio.gather(*(self._ready(slot) for slot in self._slots))

    async def stop(self) -> None:
        for slot in self._slots:
            producer, slot.producer = slot.producer, None
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
        if self._closing:
            await asyncio.wait(self._closing)

    def _new_producer(self, number: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-{number}",
            acks="all",
            enable_idempotence=True,
            # Records are handed over as whole record batches (send_batch), so waiting for
            # more only delays them: a request's batches are queued in one turn of the
            # event loop and leave together in one produce request.
            linger_ms=0,
            max_batch_size=512 * 1024,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=15000,
        )

    async def _ready(self, slot: _Slot) -> AIOKafkaProducer:
        """The slot's producer, started now if it has none."""
        async with slot.starting:
            if slot.producer is None:
                producer = self._new_producer(slot.number)
                try:
                    await producer.start()
                except Exception as error:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    log.warning("cannot reach Kafka at %s: %r", self._bootstrap, error)
                    self._failed_at = self._monotonic()
                    raise SinkUnavailable("cannot reach the event store (Kafka)") from error
                slot.producer = producer
            return slot.producer

    def _replace(self, slot: _Slot, producer: AIOKafkaProducer, error: BaseException) -> None:
        """Close ``producer`` in the background; the slot starts a fresh one when needed."""
        if slot.producer is not producer:
            return  # another request's failure replaced it already
        slot.producer = None
        log.warning(
            "replacing producer %s-%s after %r (Kafka at %s)",
            self._client_id,
            slot.number,
            error,
            self._bootstrap,
        )
        self._on_replaced(type(error).__name__)
        closing = asyncio.ensure_future(_close_quietly(producer))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def send_all(self, records: list[Record], timeout_s: float) -> None:
        deadline = self._monotonic() + timeout_s
        slot = min(self._slots, key=lambda each: each.pending)
        for attempt in range(2):
            producer = await self._ready(slot)
            error = await self._deliver(slot, producer, records, deadline - self._monotonic())
            if error is None:
                self._failed_at = None
                return
            self._failed_at = self._monotonic()
            self._replace(slot, producer, error)
            if isinstance(error, CONTENT_ERRORS):
                raise RecordsRefused(
                    f"the event store refused this batch's records ({type(error).__name__})"
                ) from error
            if is_outage(error) or attempt:
                raise SinkUnavailable(
                    f"the event store (Kafka) could not store this batch ({type(error).__name__})"
                ) from error
            log.info("sending a batch again on a fresh producer after %r", error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _deliver(
        self, slot: _Slot, producer: AIOKafkaProducer, records: list[Record], timeout_s: float
    ) -> BaseException | None:
        """Hand ``records`` to ``producer``; the delivery error, or None once acknowledged.
        ``SinkUnavailable`` if the broker did not acknowledge within ``timeout_s``."""

        async def deliver() -> None:
            await asyncio.gather(*await _enqueue(producer, records, self._batched_topics))

        slot.pending += len(records)
        task = asyncio.ensure_future(deliver())
        task.add_done_callback(lambda _: _settle(slot, len(records)))
        # asyncio.wait, not wait_for: the records keep their place in the producer's
        # queue (ordering, idempotence) even when this request gives up on them.
        done, _ = await asyncio.wait([task], timeout=max(timeout_s, 0.0))
        if not done:
            task.add_done_callback(_consume_outcome)
            self._failed_at = self._monotonic()
            log.warning(
                "Kafka at %s did not acknowledge %d records within %.3gs",
                self._bootstrap,
                len(records),
                timeout_s,
            )
            raise SinkUnavailable("the event store (Kafka) did not acknowledge this batch in time")
        error = task.exception()
        if error is not None:
            log.warning("Kafka at %s refused %d records: %r", self._bootstrap, len(records), error)
        return error

    async def ready(self, timeout_s: float) -> str | None:
        failed_at = self._failed_at
        if failed_at is not None and self._monotonic() - failed_at < RECOVERY_S:
            return "the last write to the event store (Kafka) failed"
        try:
            producers = await asyncio.wait_for(
                asyncio.gather(*(self._ready(slot) for slot in self._slots)), timeout_s
            )
            await asyncio.wait_for(producers[0].client.fetch_all_metadata(), timeout_s)
        except (SinkUnavailable, KafkaError, OSError, TimeoutError):
            return "the event store (Kafka) does not answer"
        return None


def _settle(slot: _Slot, count: int) -> None:
    slot.pending -= count


async def _close_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception as error:  # a broken producer may fail to close; it is dropped anyway
        log.info("a replaced producer did not close cleanly: %r", error)


async def _enqueue(
    producer: AIOKafkaProducer, records: list[Record], batched_topics: frozenset[str]
) -> list[asyncio.Future[Any]]:
    """Hand ``records`` to ``producer`` as one record batch per partition (in order within
    each); the futures resolve when the broker acknowledges each batch.

    Kafka's default partitioner (murmur2 of the key, like the Java client; a random
    partition for a record without a key) keeps a unit's exposures and outcomes on the
    same partition number. One ``send`` per record costs about twice as much CPU. On the
    ``batched_topics`` (the event topics) a partition's records become batch messages:
    JSON arrays of their values (``schemas.events``), so the stream pays its per-message
    cost once per batch. Each partition's batch yields to the event loop before the next
    (``fairness.py``).
    """
    built: list[tuple[str, int, BatchBuilder]] = []
    topics = dict.fromkeys(record[0] for record in records)
    for topic in topics:
        mine = records if len(topics) == 1 else [each for each in records if each[0] == topic]
        every = sorted(await producer.partitions_for(topic))
        groups, unkeyed = group_by_partition([each[1] for each in mine], len(every))
        by_partition = {every[number]: indices for number, indices in groups.items()}
        for index in unkeyed:
            by_partition.setdefault(_PARTITIONER(None, every, every), []).append(index)
        for partition, indices in by_partition.items():
            if unkeyed:
                indices.sort()
            if built:
                await asyncio.sleep(0)  # let other tenants' requests in (fairness.py)
            if topic in batched_topics:
                entries = as_batch_messages([mine[index][2] for index in indices])
            else:
                entries = [(mine[index][1], _encoded(mine[index][2])) for index in indices]
            batch = producer.create_batch()
            for key, value in entries:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    built.append((topic, partition, batch))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)  # a fresh one takes it
            built.append((topic, partition, batch))
    # All handed over in one turn of the event loop, so that they leave together in one
    # produce request (a batch handed over alone would go alone, the rest a round trip
    # later).
    return [
        await producer.send_batch(batch, topic, partition=partition)
        for topic, partition, batch in built
    ]


def as_batch_messages(values: list[bytes | msgspec.Struct]) -> list[tuple[bytes | None, bytes]]:
    """Event values (JSON objects of one partition, or event structs) as batch messages, in
    order: JSON arrays of at most ``MAX_BATCH_EVENTS`` events and ``BATCH_MESSAGE_BYTES``
    (a single event larger than that goes alone), without a key (the partition is the
    batch's). Structs alone that fit one message are encoded in one call."""
    if 0 < len(values) <= MAX_BATCH_EVENTS and not any(type(value) is bytes for value in values):
        whole = _ENCODER.encode(values)
        if len(whole) <= BATCH_MESSAGE_BYTES:
            return [(None, whole)]
    messages: list[tuple[bytes | None, bytes]] = []
    current: list[bytes] = []
    size = 2
    for each in values:
        value = _encoded(each)
        if current and (
            size + len(value) + 1 > BATCH_MESSAGE_BYTES or len(current) >= MAX_BATCH_EVENTS
        ):
            messages.append((None, b"[" + b",".join(current) + b"]"))
            current, size = [], 2
        current.append(value)
        size += len(value) + 1
    if current:
        messages.append((None, b"[" + b",".join(current) + b"]"))
    return messages


def _encoded(value: bytes | msgspec.Struct) -> bytes:
    return value if type(value) is bytes else _ENCODER.encode(value)


def _consume_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("records of an abandoned request failed: %s", task.exception())
