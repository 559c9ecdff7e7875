"""Where accepted events and dead letters go: Kafka, through idempotent librdkafka producers.

The producer is confluent-kafka's (librdkafka, C): it batches, sends and waits for the
broker's acknowledgements (acks=all, idempotent) in its own threads, without the GIL.
The request path only hands each partition's bytes over (``produce``); a thread of the
sink serves the delivery reports (``poll``) and wakes the event loop once per request,
when the broker acknowledged the request's last record. kafka-python and aiokafka did
that work in Python, a large part of each request's cost (``docs/benchmarks.md``).

``send_all`` returns only once the broker acknowledged every record (acks=all), or raises:

- ``SinkUnavailable``: a broker outage (no acknowledgement within the timeout, the broker
  unreachable, the producer's bounded queue full). The caller must not acknowledge
  anything (some records may still land later: clients retry with the same ``event_id``
  and everything downstream de-duplicates by it); the API answers 503 with Retry-After.
- ``RecordsRefused``: the broker (or the client's own size check) refused records for
  their content (too large, corrupt): retrying them cannot succeed, so it is that
  request's error (the API answers 422), never an outage.

Partitions are spread over ``producers`` producers (``LIFTSTREAM_COLLECTOR_PRODUCERS``),
partition p of an event topic through producer p mod ``producers``, every other record
(dead letters) through the first. librdkafka writes one partition per produce request,
and a broker answers one request of a connection at a time: through one producer a
request's four partition arrays were four produce requests in a row, through four they
are four at once (the Java client and kafka-python put them in one request instead). A
partition always goes through the same producer, so its order and the producer's
idempotence hold (``docs/benchmarks.md`` has the measurement).

Producers recover: a producer whose delivery failed with any Kafka error is closed (in
its thread, its other records still flush) and replaced by a fresh one, and the callback
``on_replaced`` is told why (the collector counts it in Prometheus). An idempotent
producer that lost a batch can fail every later one (librdkafka's fatal idempotence
errors), which once answered every tenant 503 for good. A request whose delivery failed
with an error that is neither an outage nor about its content (a fatal or producer-state
error) is sent once more on the fresh producer.

``ready`` says whether the sink can write now: the producer exists, no delivery failed in
the last ``RECOVERY_S`` without one succeeding since, and the broker answers a metadata
request. Error messages name no address or setting; the log has the detail.

The producer is created lazily and the broker is not needed to start, so the collector
comes up even while the broker is down. librdkafka keeps up to five produce requests in
flight per broker, so a tenant's small batch does not wait for another's big one to be
acknowledged. A client that waits for its answer before sending the next batch keeps its
order (the first is written by then); concurrent requests never had an order.

Records on the ``batched_topics`` (the event topics) are grouped by partition (Kafka's
default partitioner: murmur2 of the key, compiled in ``schemas.partitioning``) and each
partition's events become batch messages, JSON arrays (``schemas.events``), so the stream
pays its per-message cost once per batch; the partition counts are cached
(``METADATA_MAX_AGE_S``). Other records (dead letters) keep their key and librdkafka's
``murmur2_random`` partitioner, the same as the Java client's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol

import msgspec
from confluent_kafka import KafkaError, KafkaException, Producer

from schemas.limits import MAX_BATCH_EVENTS
from schemas.partitioning import group_by_partition, group_by_unit_partition, unit_partition_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TenantEvents:
    """Accepted events (structs with a ``unit_id``) of one tenant, for a batched topic: the
    sink groups them by the partition of their ``tenant:unit`` key (compiled) and encodes
    each partition's at once, with no record or key per event."""

    tenant_id: str
    events: list[Any]  # structs with a unit_id


#: topic, key, value: the value's JSON, or on a batched topic an event struct (msgspec),
#: encoded with the rest of its partition's events in one call (``as_batch_messages``), or
#: a tenant's events (``TenantEvents``, key None).
Record = tuple[str, bytes | None, bytes | msgspec.Struct | TenantEvents]
#: Largest batch message (a JSON array of one partition's events) the sink writes.
BATCH_MESSAGE_BYTES = 256 * 1024
#: After a failed delivery the sink is not ready for this long, unless one succeeds.
RECOVERY_S = 10.0
#: How long a topic's partition count is trusted before it is read again.
METADATA_MAX_AGE_S = 60.0
#: How long a replaced producer may take to deliver what it holds (other requests may
#: still wait for those records).
CLOSE_TIMEOUT_S = 5.0
#: The same when the sink stops: the HTTP server has answered every request by then, so
#: what is left belongs to requests already answered 503 (not acknowledged).
STOP_TIMEOUT_S = 1.0
#: How long ``start`` waits for the broker's first answer (a broker that is down is not
#: fatal: the producer keeps trying).
START_PROBE_S = 2.0
#: How long the delivery thread waits for a report before it looks whether to stop.
POLL_S = 0.2
_ENCODER = msgspec.json.Encoder()
#: The broker (or the client's size check) refused the records for what they are:
#: sending them again cannot help.
CONTENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
#: The broker's state explains these (down, unreachable, slow, busy), not the records.
OUTAGE_ERRORS = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
    }
)


#: Unacknowledged messages and KiB all of the sink's producers may hold together.
QUEUE_MESSAGES = 100_000
QUEUE_KBYTES = 128 * 1024


def producer_settings(bootstrap: str, client_id: str, producers: int = 1) -> dict[str, Any]:
    """A producer's librdkafka settings: acks=all, idempotent, bounded memory (its share
    of ``QUEUE_MESSAGES`` and ``QUEUE_KBYTES`` among ``producers``)."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "acks": "all",
        "enable.idempotence": True,
        # A request's messages are produced together and leave at once; waiting for more
        # only delays its answer (measured: linger 0 is the fastest for 500-event
        # requests, docs/benchmarks.md).
        "linger.ms": 0,
        # Java's partitioner for keyed records (dead letters); event batches name theirs.
        "partitioner": "murmur2_random",
        # Bounded memory: what the broker has not acknowledged yet; beyond it a request
        # is answered 503 (queue full), not buffered.
        "queue.buffering.max.messages": QUEUE_MESSAGES // producers,
        "queue.buffering.max.kbytes": QUEUE_KBYTES // producers,
        # A record larger than this is refused before it is sent (422): 2 MiB, so that a
        # record the broker's 1 MiB limit refuses still reaches the broker, as before.
        "message.max.bytes": 2 * 1024 * 1024,
        "request.timeout.ms": 15_000,
        # A record not acknowledged in this time fails; its request gave up long before.
        "message.timeout.ms": 30_000,
        "socket.nagle.disable": True,
    }


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


def is_outage(error: KafkaError) -> bool:
    """A failure the broker's state explains (down, unreachable, slow), not the records."""
    return error.code() in OUTAGE_ERRORS or (error.retriable() and not error.fatal())


def error_name(error: KafkaError) -> str:
    return str(error.name())


@dataclass(frozen=True, slots=True)
class _Failure:
    """A request's first delivery error and the producer (and its slot) that reported it."""

    error: KafkaError
    slot: int
    handle: _Handle


class _Delivery:
    """One request's records: its future resolves once the last of them is reported.

    Called by librdkafka's delivery reports, in the delivery threads of the producers the
    request used (``reporter``, one per record), and once by the request when it has
    handed every record over (``handed_over``): reports may arrive while later records are
    still being encoded. It wakes the event loop once, with the first failure if any."""

    __slots__ = ("failure", "future", "lock", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[_Failure | _Late | None] = loop.create_future()
        self.remaining = 1  # the hand-over itself
        self.failure: _Failure | None = None
        self.lock = threading.Lock()

    def reporter(self, slot: int, handle: _Handle) -> Callable[[KafkaError | None, Any], None]:
        """The delivery callback of one more record, produced through ``handle`` (``slot``)."""
        with self.lock:
            self.remaining += 1
        return partial(self._report, slot, handle)

    def handed_over(self) -> None:
        """Every record is produced: the future resolves once all are reported."""
        self._count_down(None)

    def _report(self, slot: int, handle: _Handle, error: KafkaError | None, message: Any) -> None:
        self._count_down(None if error is None else _Failure(error, slot, handle))

    def _count_down(self, failure: _Failure | None) -> None:
        with self.lock:  # several producers' threads report
            if failure is not None and self.failure is None:
                self.failure = failure
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.loop.call_soon_threadsafe(_resolve, self.future, self.failure)


class _Late:
    """What a request's delivery future holds when its deadline passed first."""


_LATE: Final = _Late()


def _resolve(
    future: asyncio.Future[_Failure | _Late | None], failure: _Failure | _Late | None
) -> None:
    if not future.done():
        future.set_result(failure)


class _Handle:
    """A producer and the thread serving its delivery reports until it is closed."""

    def __init__(self, producer: Any, name: str) -> None:
        self.producer = producer
        self._closing = threading.Event()
        self._flush_s = CLOSE_TIMEOUT_S
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        producer = self.producer
        while not self._closing.is_set():
            producer.poll(POLL_S)
        # Deliver what it holds (reports still resolve their requests), then drop it.
        try:
            left = producer.flush(self._flush_s)
            if left:
                log.warning("a closed producer dropped %d unacknowledged records", left)
                producer.purge()
                producer.poll(0)
        except Exception as error:  # a broken producer may fail to close; it is dropped anyway
            log.info("a closed producer did not close cleanly: %r", error)

    def close(self, flush_s: float = CLOSE_TIMEOUT_S) -> None:
        self._flush_s = flush_s
        self._closing.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


@dataclass
class _Partitions:
    count: int
    read_at: float


class KafkaSink:
    """Idempotent librdkafka producers, a partition always through the same one; each
    request waits for its own records only."""

    def __init__(
        self,
        bootstrap: str,
        client_id: str = "liftstream-collector",
        on_replaced: Callable[[str], None] = lambda reason: None,
        monotonic: Callable[[], float] = time.monotonic,
        batched_topics: frozenset[str] = frozenset(),
        producers: int = 1,
    ) -> None:
        """``batched_topics``: topics whose records are written as batch messages, one
        JSON array per partition (the event topics); ``producers``: how many producers
        (connections) share their partitions."""
        if producers < 1:
            raise ValueError(f"producers must be at least 1, not {producers}")
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._on_replaced = on_replaced
        self._monotonic = monotonic
        self._failed_at: float | None = None
        self._batched_topics = batched_topics
        self._handles: list[_Handle | None] = [None] * producers
        self._closed: list[_Handle] = []
        self._partitions: dict[str, _Partitions] = {}
        self._generation = 0

    def _new_producer(self) -> Any:
        return Producer(
            producer_settings(self._bootstrap, self._client_id, len(self._handles)),
            error_cb=_log_error,
        )

    def _current(self, slot: int = 0) -> _Handle:
        handle = self._handles[slot]
        if handle is None:
            self._generation += 1
            handle = self._handles[slot] = _Handle(
                self._new_producer(), f"{self._client_id}-deliveries-{self._generation}"
            )
        return handle

    async def start(self) -> None:
        """Try to reach the broker now; a broker that is down is not fatal (retried)."""
        handles = [self._current(slot) for slot in range(len(self._handles))]
        try:
            await asyncio.to_thread(handles[0].producer.list_topics, None, START_PROBE_S)
        except KafkaException as error:
            log.warning("cannot reach Kafka at %s: %r", self._bootstrap, error)

    async def stop(self) -> None:
        open_handles = [handle for handle in self._handles if handle is not None]
        self._handles = [None] * len(self._handles)
        for handle in open_handles:
            handle.close(STOP_TIMEOUT_S)
        for each in [*self._closed, *open_handles]:
            await asyncio.to_thread(each.join, CLOSE_TIMEOUT_S + 1)
        self._closed.clear()

    def _replace(self, slot: int, handle: _Handle, error: KafkaError) -> None:
        """Close ``handle`` in its thread; a fresh producer is made when needed."""
        if self._handles[slot] is not handle:
            return  # another request's failure replaced it already
        self._handles[slot] = None
        log.warning(
            "replacing producer %s #%d after %s (Kafka at %s)",
            self._client_id,
            slot,
            error,
            self._bootstrap,
        )
        self._on_replaced(error_name(error))
        handle.close()
        self._closed = [each for each in self._closed if each._thread.is_alive()] + [handle]

    async def send_all(self, records: list[Record], timeout_s: float) -> None:
        deadline = self._monotonic() + timeout_s
        for attempt in range(2):
            failure = await self._deliver(records, deadline)
            if failure is None:
                self._failed_at = None
                return
            error, slot, handle = failure.error, failure.slot, failure.handle
            self._failed_at = self._monotonic()
            log.warning("Kafka at %s refused %d records: %s", self._bootstrap, len(records), error)
            if error.code() in CONTENT_ERRORS:
                self._replace(slot, handle, error)
                raise RecordsRefused(
                    f"the event store refused this batch's records ({error_name(error)})"
                )
            if error.code() == KafkaError._QUEUE_FULL:
                # Not the producer's fault: too much awaits the broker already.
                raise SinkUnavailable(
                    "the event store (Kafka) is not keeping up; nothing more is queued"
                )
            self._replace(slot, handle, error)
            if is_outage(error) or attempt:
                raise SinkUnavailable(
                    f"the event store (Kafka) could not store this batch ({error_name(error)})"
                )
            log.info("sending a batch again on a fresh producer after %s", error)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _deliver(self, records: list[Record], deadline: float) -> _Failure | None:
        """Hand ``records`` to the producers (a partition to its own); the first delivery
        failure, or None once all are acknowledged. ``SinkUnavailable`` if not all are
        acknowledged by ``deadline``."""
        counts = {
            topic: await self._partition_count(topic, deadline)
            for topic in dict.fromkeys(record[0] for record in records)
            if topic in self._batched_topics
        }
        delivery = _Delivery(asyncio.get_running_loop())
        spread = len(self._handles)
        slot, handle = 0, self._current()
        try:
            # Each message is produced as soon as it is encoded: the broker works on the
            # first partitions' arrays while the next are encoded.
            for topic, partition, key, value in self._messages(records, counts):
                # Dead letters (no partition named) through the first producer.
                slot = 0 if partition is None else partition % spread
                handle = self._current(slot)
                report = delivery.reporter(slot, handle)
                if partition is None:
                    handle.producer.produce(topic, value, key, on_delivery=report)
                else:
                    handle.producer.produce(topic, value, key, partition, on_delivery=report)
        except BufferError:
            return _Failure(KafkaError(KafkaError._QUEUE_FULL), slot, handle)
        except KafkaException as error:
            # Those produced before it may still land (the client retries the same ids).
            return _Failure(error.args[0], slot, handle)
        delivery.handed_over()
        # The future itself, not wait_for (which cancels what it waits for): the records
        # keep their place in the producer's queue (ordering, idempotence) even when this
        # request gives up on them. A timer is cheaper than asyncio.wait's task and waiter.
        loop = delivery.loop
        timer = loop.call_at(
            loop.time() + max(deadline - self._monotonic(), 0.0), _resolve, delivery.future, _LATE
        )
        try:
            outcome = await delivery.future
        finally:
            timer.cancel()
        if isinstance(outcome, _Late):
            self._failed_at = self._monotonic()
            log.warning(
                "Kafka at %s did not acknowledge %d records in time", self._bootstrap, len(records)
            )
            raise SinkUnavailable("the event store (Kafka) did not acknowledge this batch in time")
        return outcome

    @staticmethod
    def _messages(
        records: list[Record], partition_counts: dict[str, int]
    ) -> Iterator[tuple[str, int | None, bytes | None, bytes]]:
        """(topic, partition, key, value) of each message to produce, in order, each
        encoded when it is asked for: on a batched topic (one with a partition count) the
        batch messages of each partition, else each record as is."""
        topics = dict.fromkeys(record[0] for record in records)
        for topic in topics:
            mine = records if len(topics) == 1 else [each for each in records if each[0] == topic]
            count = partition_counts.get(topic)
            if count is not None and len(mine) == 1 and type(mine[0][2]) is TenantEvents:
                tenant_events = mine[0][2]
                by_partition = group_by_unit_partition(
                    tenant_events.tenant_id, tenant_events.events, count
                )
                for partition, events in by_partition.items():
                    for _, value in as_batch_messages(events, all_structs=True):
                        yield topic, partition, None, value
                continue
            plain = one_per_event(mine)
            if count is None:
                for _, key, each in plain:
                    yield topic, None, key, _encoded(each)
                continue
            groups, unkeyed = group_by_partition([each[1] for each in plain], count)
            if unkeyed:  # no key: a random partition, as Kafka's partitioner
                groups.setdefault(random.randrange(count), []).extend(unkeyed)
                for indices in groups.values():
                    indices.sort()
            for partition, indices in groups.items():
                for _, value in as_batch_messages([plain[index][2] for index in indices]):
                    yield topic, partition, None, value

    async def _partition_count(self, topic: str, deadline: float) -> int:
        known = self._partitions.get(topic)
        now = self._monotonic()
        if known is not None and now - known.read_at < METADATA_MAX_AGE_S:
            return known.count
        try:
            metadata = await asyncio.to_thread(
                self._current().producer.list_topics, topic, max(deadline - now, 0.1)
            )
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                raise KafkaException(
                    described.error if described else KafkaError(KafkaError._UNKNOWN_TOPIC)
                )
        except KafkaException as error:
            if known is not None:
                return known.count  # keep writing with the last count known
            self._failed_at = self._monotonic()
            log.warning(
                "cannot read %s's partitions from Kafka at %s: %r", topic, self._bootstrap, error
            )
            raise SinkUnavailable("cannot reach the event store (Kafka)") from None
        self._partitions[topic] = _Partitions(len(described.partitions), self._monotonic())
        return len(described.partitions)

    async def ready(self, timeout_s: float) -> str | None:
        failed_at = self._failed_at
        if failed_at is not None and self._monotonic() - failed_at < RECOVERY_S:
            return "the last write to the event store (Kafka) failed"
        try:
            await asyncio.to_thread(self._current().producer.list_topics, None, timeout_s)
        except KafkaException:
            return "the event store (Kafka) does not answer"
        return None


def _log_error(error: KafkaError) -> None:
    """librdkafka's errors outside a delivery (a broker down, a fatal error): logged, the
    deliveries report what they mean for requests."""
    log.log(logging.ERROR if error.fatal() else logging.INFO, "Kafka client: %s", error)


def as_batch_messages(
    values: list[bytes | msgspec.Struct] | list[msgspec.Struct], all_structs: bool = False
) -> list[tuple[bytes | None, bytes]]:
    """Event values (JSON objects of one partition, or event structs) as batch messages, in
    order: JSON arrays of at most ``MAX_BATCH_EVENTS`` events and ``BATCH_MESSAGE_BYTES``
    (a single event larger than that goes alone), without a key (the partition is the
    batch's). Structs alone (``all_structs`` says so without a look at each) that fit one
    message are encoded in one call."""
    if 0 < len(values) <= MAX_BATCH_EVENTS and (
        all_structs or not any(type(value) is bytes for value in values)
    ):
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


def one_per_event(
    records: list[Record],
) -> list[tuple[str, bytes | None, bytes | msgspec.Struct]]:
    """``records`` with each ``TenantEvents`` spread into a record per event, keyed
    ``tenant:unit`` (a topic written unbatched, or one holding other records too)."""
    if not any(type(record[2]) is TenantEvents for record in records):
        return records  # type: ignore[return-value]
    plain: list[tuple[str, bytes | None, bytes | msgspec.Struct]] = []
    for topic, key, value in records:
        if type(value) is TenantEvents:
            tenant_id = value.tenant_id
            plain.extend(
                (topic, unit_partition_key(tenant_id, event.unit_id), event)
                for event in value.events
            )
        else:
            plain.append((topic, key, value))  # type: ignore[arg-type]
    return plain


def _encoded(value: bytes | msgspec.Struct) -> bytes:
    return value if type(value) is bytes else _ENCODER.encode(value)
