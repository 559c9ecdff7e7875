"""Where accepted events and dead letters go: Kafka, through a few idempotent aiokafka producers.

``send_all`` returns only once the broker acknowledged every record (acks=all), or raises
``SinkUnavailable`` after the timeout; in that case the caller must not acknowledge
anything (some records may still land later: clients retry with the same ``event_id``
and everything downstream de-duplicates by it). The producers are started lazily and
restarted after a failed start, so the collector comes up even while the broker is down.
An aiokafka producer keeps one produce request in flight per broker, so a request's
records go whole (in order) to the producer with the fewest records awaiting the broker:
a small batch does not queue behind another tenant's big one. A client that waits for
its answer before sending the next batch keeps its order (the first is written by
then); concurrent requests never had an order.
Records are handed to the producer as one record batch per partition, grouped in slices
that yield to the event loop between them, so a big batch does not hold up other
tenants' requests (``fairness.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from services.collector.fairness import SLICE

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # topic, key, value
#: Producers of a sink. A few suffice: a request waits only when every one is busy.
PRODUCERS = 3
_PARTITIONER = DefaultPartitioner()


class SinkUnavailable(Exception):
    """The broker did not acknowledge the records in time."""


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_all(self, records: list[Record], timeout_s: float) -> None: ...

    async def reachable(self, timeout_s: float) -> bool: ...


class KafkaSink:
    """``producers`` idempotent producers; each request goes whole to the least busy one."""

    def __init__(
        self, bootstrap: str, client_id: str = "liftstream-collector", producers: int = PRODUCERS
    ) -> None:
        if producers < 1:
            raise ValueError(f"producers must be at least 1, not {producers}")
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._count = producers
        self._producers: list[AIOKafkaProducer] = []
        #: Records handed to each producer and not yet acknowledged (or failed).
        self._pending: list[int] = []
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Try to connect now; a broker that is down is not fatal (retried on demand)."""
        try:
            await self._ready_producers()
        except SinkUnavailable as error:
            log.warning("the broker is not reachable yet: %s", error)

    async def stop(self) -> None:
        producers, self._producers = self._producers, []
        for producer in producers:
            with contextlib.suppress(Exception):
                await producer.stop()

    def _new_producer(self, number: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._client_id}-{number}",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=512 * 1024,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=15000,
        )

    async def _ready_producers(self) -> list[AIOKafkaProducer]:
        async with self._starting:
            if not self._producers:
                producers = [self._new_producer(number) for number in range(self._count)]
                outcomes = await asyncio.gather(
                    *(producer.start() for producer in producers), return_exceptions=True
                )
                failures = [o for o in outcomes if isinstance(o, BaseException)]
                if failures:
                    for producer in producers:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                    raise SinkUnavailable(
                        f"cannot reach Kafka at {self._bootstrap}: {failures[0]}"
                    ) from failures[0]
                self._producers = producers
                self._pending = [0] * len(producers)
            return self._producers

    async def send_all(self, records: list[Record], timeout_s: float) -> None:
        producers = await self._ready_producers()
        # Each producer has one produce request in flight at a time: a small batch sent
        # to an idle producer does not wait behind another tenant's big one.
        chosen = min(range(len(producers)), key=self._pending.__getitem__)
        producer = producers[chosen]

        async def deliver() -> None:
            await asyncio.gather(*await _enqueue(producer, records))

        self._pending[chosen] += len(records)
        task = asyncio.ensure_future(deliver())
        task.add_done_callback(lambda _: self._settle(producer, chosen, len(records)))
        # asyncio.wait, not wait_for: the records keep their place in the producer's
        # queue (ordering, idempotence) even when this request gives up on them.
        done, _ = await asyncio.wait([task], timeout=timeout_s)
        if not done:
            task.add_done_callback(_consume_outcome)
            raise SinkUnavailable(
                f"Kafka at {self._bootstrap} did not acknowledge within {timeout_s:g}s"
            )
        error = task.exception()
        if error is not None:
            raise SinkUnavailable(
                f"Kafka at {self._bootstrap} refused the records: {error}"
            ) from error

    def _settle(self, producer: AIOKafkaProducer, index: int, count: int) -> None:
        if index < len(self._producers) and self._producers[index] is producer:
            self._pending[index] -= count

    async def reachable(self, timeout_s: float) -> bool:
        try:
            producers = await asyncio.wait_for(self._ready_producers(), timeout_s)
            await asyncio.wait_for(producers[0].client.fetch_all_metadata(), timeout_s)
        except (SinkUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True


async def _enqueue(producer: AIOKafkaProducer, records: list[Record]) -> list[asyncio.Future[Any]]:
    """Hand ``records`` to ``producer`` as one record batch per partition (in order within
    each); the futures resolve when the broker acknowledges each batch.

    The producer's own partitioner (murmur2 of the key, like the Java client; a random
    partition for a record without a key) keeps a unit's exposures and outcomes on the
    same partition number. One ``send`` per record costs about twice as much CPU.
    """
    partitions: dict[str, list[int]] = {}
    by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
    for index, (topic, key, value) in enumerate(records):
        if index and index % SLICE == 0:
            await asyncio.sleep(0)  # let other tenants' requests in (fairness.py)
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        every = partitions[topic]
        by_partition.setdefault((topic, _PARTITIONER(key, every, every)), []).append((key, value))
    futures: list[asyncio.Future[Any]] = []
    for (topic, partition), entries in by_partition.items():
        batch = producer.create_batch()
        for key, value in entries:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a fresh batch takes one
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


def _consume_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("records of an abandoned request failed: %s", task.exception())
