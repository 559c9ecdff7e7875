"""The Kafka producer the SDK and the CLI write with: acks from all replicas, idempotent.

Idempotence keeps a unit's events in the order they were sent even when a batch is
retried, which the stream relies on (an exposure before the outcomes that follow it).
"""

from __future__ import annotations

from kafka import KafkaProducer
from kafka.errors import KafkaError

from liftstream.errors import PlatformUnavailableError

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
