"""``HoleProbe`` on a real partition written by a transactional producer: offsets taken
by markers and an aborted transaction are holes, a gap with a committed record in it is
not (the Faust worker then reads it again), a log ending with a marker ends in holes,
and the gaps inside one fetched range are answered without another fetch."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from liftstream.settings import Settings
from services.stream.holes import HoleProbe

pytestmark = pytest.mark.integration


def _transactions(settings: Settings, topic: str, plan: list[tuple[int, bool]]) -> None:
    """One transaction per ``(records, commit)`` on partition 0 of ``topic``."""
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap, "transactional.id": f"{settings.namespace}-p"}
    )
    producer.init_transactions(30)
    for records, commit in plan:
        producer.begin_transaction()
        for number in range(records):
            producer.produce(topic, value=b"%d" % number, partition=0)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)


def _committed_offsets(settings: Settings, topic: str) -> list[int]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        consumer_timeout_ms=1500,
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        return [record.offset for record in consumer]
    finally:
        consumer.close()


def test_the_probe_tells_holes_from_records(platform_settings: Settings) -> None:
    topic = platform_settings.topics.outcomes
    # 2 committed (0, 1; marker 2), 2 aborted (3, 4; marker 5), 1 committed (6; marker 7).
    _transactions(platform_settings, topic, [(2, True), (2, False), (1, True)])
    assert _committed_offsets(platform_settings, topic) == [0, 1, 6]

    async def answers() -> tuple[list[bool], int]:
        probe = HoleProbe(platform_settings.bootstrap, "probe-test")
        try:
            found = [
                await probe.holes(topic, 0, 2, 6),  # a marker, aborted records, a marker
                await probe.holes(topic, 0, 3, 6),
                await probe.holes(topic, 0, 1, 6),  # record 1 lies between: a drop
            ]
            fetches = probe.fetches
            found.append(await probe.holes(topic, 0, 7, 8))  # the log ends with a marker
            return found, fetches
        finally:
            await probe.stop()

    found, fetches = asyncio.run(answers())
    assert found == [True, True, False, True]
    # The first fetch (from offset 2) covers the next gap; offset 1 lies before it.
    assert fetches == 2
