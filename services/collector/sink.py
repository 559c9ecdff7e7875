"""Where accepted events and dead letters go: Kafka, through one idempotent aiokafka producer.

``send_all`` returns only once the broker acknowledged every record (acks=all), or raises
``SinkUnavailable`` after the timeout; in that case the caller must not acknowledge
anything (some records may still land later: clients retry with the same ``event_id``
and everything downstream de-duplicates by it). The producer is started lazily and
restarted after a failed start, so the collector comes up even while the broker is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # topic, key, value


class SinkUnavailable(Exception):
    """The broker did not acknowledge the records in time."""


class EventSink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_all(self, records: list[Record], timeout_s: float) -> None: ...

    async def reachable(self, timeout_s: float) -> bool: ...


class KafkaSink:
    def __init__(self, bootstrap: str, client_id: str = "liftstream-collector") -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Try to connect now; a broker that is down is not fatal (retried on demand)."""
        try:
            await self._ready_producer()
        except SinkUnavailable as error:
            log.warning("the broker is not reachable yet: %s", error)

    async def stop(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    max_batch_size=512 * 1024,
                    max_request_size=2 * 1024 * 1024,
                    request_timeout_ms=15000,
                )
                try:
                    await producer.start()
                except (KafkaError, OSError) as error:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise SinkUnavailable(
                        f"cannot reach Kafka at {self._bootstrap}: {error}"
                    ) from error
                self._producer = producer
            return self._producer

    async def send_all(self, records: list[Record], timeout_s: float) -> None:
        producer = await self._ready_producer()

        async def deliver() -> None:
            futures = [
                await producer.send(topic, value=value, key=key) for topic, key, value in records
            ]
            await asyncio.gather(*futures)

        task = asyncio.ensure_future(deliver())
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

    async def reachable(self, timeout_s: float) -> bool:
        try:
            producer = await asyncio.wait_for(self._ready_producer(), timeout_s)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout_s)
        except (SinkUnavailable, KafkaError, OSError, TimeoutError):
            return False
        return True


def _consume_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("records of an abandoned request failed: %s", task.exception())
