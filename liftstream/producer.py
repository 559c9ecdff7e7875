"""The Kafka producer the SDK and the CLI write with: acks from all replicas, idempotent.

Idempotence keeps a unit's events in the order they were sent even when a batch is
retried, which the stream relies on (an exposure before the outcomes that follow it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from liftstream.errors import PlatformUnavailableError

log = logging.getLogger(__name__)

DEFAULT_LINGER_MS = 5
#: How long a record may wait for the broker, retries included, before it counts as not
#: delivered: a broker outage of up to five minutes loses nothing (kafka-python's own
#: default is two).
DEFAULT_DELIVERY_TIMEOUT_S = 300.0


def create_producer(
    bootstrap: str,
    *,
    client_id: str = "liftstream-sdk",
    linger_ms: int = DEFAULT_LINGER_MS,
    compression_type: str | None = None,
    bootstrap_timeout_s: float = 30.0,
    max_block_s: float = 60.0,
    delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
) -> KafkaProducer:
    """A connected producer, or ``PlatformUnavailableError`` saying which broker failed."""
    if not bootstrap:
        raise PlatformUnavailableError(
            "no Kafka broker configured: set LIFTSTREAM_BOOTSTRAP or start one with `liftstream up`"
        )
    try:
        return KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            compression_type=compression_type,
            bootstrap_timeout_ms=int(bootstrap_timeout_s * 1000),
            # How long send() may wait for metadata, e.g. of a topic that does not exist.
            max_block_ms=int(max_block_s * 1000),
            delivery_timeout_ms=int(delivery_timeout_s * 1000),
        )
    except KafkaError as error:
        raise PlatformUnavailableError(f"cannot reach Kafka at {bootstrap}: {error}") from error


class ReconnectingProducer:
    """The SDK's producer, made on first use and made again while the broker is away.

    A service that starts while Kafka is down must still start: ``track`` only queues, and
    the transport's background thread, the only caller of ``send``/``partitions_for``,
    waits here (retrying with back-off, up to ``patience_s`` per call) until a producer
    connects. Events meanwhile stay in the transport's bounded queue.
    """

    def __init__(
        self,
        bootstrap: str,
        factory: Callable[[], KafkaProducer],
        patience_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
    ) -> None:
        if not bootstrap:  # a missing setting is the caller's to fix now, not an outage
            create_producer(bootstrap)
        self._factory = factory
        self._patience_s = patience_s
        self._producer: KafkaProducer | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def _connected(self) -> KafkaProducer:
        with self._lock:
            deadline = time.monotonic() + self._patience_s
            backoff = 0.5
            while self._producer is None:
                if self._closed.is_set():
                    raise PlatformUnavailableError("the producer is closed")
                try:
                    self._producer = self._factory()
                except PlatformUnavailableError as error:
                    if time.monotonic() + backoff > deadline:
                        raise
                    log.warning("Kafka is not reachable yet (retrying): %s", error)
                    self._closed.wait(backoff)
                    backoff = min(10.0, backoff * 2)
            return self._producer

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> Any:
        return self._connected().send(topic, value=value, key=key, partition=partition)

    def partitions_for(self, topic: str) -> set[int]:
        return set(self._connected().partitions_for(topic) or ())

    def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        self._closed.set()
        if self._producer is not None:
            self._producer.close(timeout)
