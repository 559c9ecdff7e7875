"""Create the catalog's topics with their partitions and retention, and probe the broker."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.topics import TopicCatalog

log = logging.getLogger(__name__)


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> bool:
    """True once a metadata request to ``bootstrap`` succeeds, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        admin = None
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=3000, client_id="liftstream-probe"
            )
            admin.describe_cluster()
            return True
        except (KafkaError, OSError, ValueError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    admin.close()


def ensure_topics(bootstrap: str, catalog: TopicCatalog) -> list[str]:
    """Create every topic of the catalog that does not exist yet; return those created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="liftstream-topics")
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in catalog.specs() if spec.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            spec.replication_factor,
                            topic_configs=spec.config,
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        _wait_until_visible(admin, [spec.name for spec in catalog.specs()])
        if created:
            log.info("created topics %s", created)
        return created
    finally:
        admin.close()


def delete_namespace_topics(bootstrap: str, *namespaces: str) -> list[str]:
    """Delete every topic of ``namespaces`` (``<ns>.`` catalog topics and ``<ns>-``
    internal ones): what a test or benchmark made on a shared broker. Returns the names."""
    prefixes = tuple(f"{namespace}{separator}" for namespace in namespaces for separator in ".-")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = [name for name in admin.list_topics() if name.startswith(prefixes)]
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()


def _wait_until_visible(admin: KafkaAdminClient, names: list[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if set(names) <= set(admin.list_topics()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics not visible after {timeout}s: {names}")


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, dict[int, int]]:
    """Topic -> partition -> end offset (the offset the next message will get)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    result: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    for partition, offset in ends.items():
        result[partition.topic][partition.partition] = offset
    return result


@contextlib.contextmanager
def namespace_deleted_afterwards(bootstrap: str, namespace: str) -> Iterator[None]:
    """Delete ``namespace``'s topics from the shared broker ``bootstrap`` when the block
    ends, however it ends (a benchmark's namespace: 436 topics left behind once, and the
    shared broker answered twice as fast when they were gone). Nothing when ``bootstrap``
    is empty: the platform then ran its own broker, gone with it."""
    try:
        yield
    finally:
        if bootstrap:
            delete_namespace_topics(bootstrap, namespace)
