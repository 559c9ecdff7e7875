"""The collector's sink against the real broker: a batch is stored whole, on each unit's
partition, by the time ``send_all`` returns; a producer that hits a fatal error is
replaced, and the next batch is stored (it once answered every tenant 503 for good).

A record larger than the broker takes (``MessageSizeTooLarge``) broke the idempotent
producer's sequence: every later batch failed with ``OutOfOrderSequenceNumber``. The
bounded dead letters keep the collector from ever writing such a record; this test
writes one anyway, through the sink, to prove the recovery.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from liftstream.settings import Settings
from schemas.events import parse_event
from schemas.limits import BROKER_MESSAGE_BYTES
from schemas.partitioning import partition_for
from services.collector.sink import KafkaSink, Record, RecordsRefused
from tests.integration.helpers_collector import outcome, read_events, read_topic

pytestmark = pytest.mark.integration


def test_a_record_the_broker_refuses_is_that_batchs_error_and_the_producer_recovers(
    platform_settings: Settings,
) -> None:
    topic = platform_settings.topics.outcomes
    replaced: list[str] = []
    good = [outcome(f"u{i}") for i in range(3)]

    def record(event: dict[str, object]) -> tuple[str, bytes, bytes]:
        parsed = parse_event(orjson.dumps({**event, "tenant_id": "acme"}))
        return (topic, parsed.partition_key, parsed.to_json())

    async def scenario() -> tuple[str | None, str | None, str | None]:
        sink = KafkaSink(platform_settings.bootstrap, on_replaced=replaced.append)
        await sink.start()
        try:
            await sink.send_all([record(good[0])], timeout_s=20)
            before = await sink.ready(5)
            with pytest.raises(RecordsRefused) as refused:
                await sink.send_all(
                    [(topic, b"acme:big", b"x" * (BROKER_MESSAGE_BYTES + 1000))], 20
                )
            assert "MSG_SIZE_TOO_LARGE" in str(refused.value)
            assert platform_settings.bootstrap not in str(refused.value)
            during = await sink.ready(5)
            # Twice: the second batch on a broken producer was the one that failed for good.
            await sink.send_all([record(good[1])], timeout_s=20)
            await sink.send_all([record(good[2])], timeout_s=20)
            after = await sink.ready(5)
            return before, during, after
        finally:
            await sink.stop()

    before, during, after = asyncio.run(scenario())
    assert before is None
    assert during is not None and platform_settings.bootstrap not in during
    assert after is None
    assert replaced == ["MSG_SIZE_TOO_LARGE"]
    stored = [
        parse_event(value).unit_id for _, value in read_topic(platform_settings.bootstrap, topic)
    ]
    assert sorted(stored) == ["u0", "u1", "u2"]


def test_a_batch_is_stored_whole_on_each_units_partition_once_send_all_returns(
    platform_settings: Settings,
) -> None:
    topics = platform_settings.topics
    events = [
        parse_event(orjson.dumps({**outcome(f"user-{n}"), "tenant_id": "acme"})) for n in range(300)
    ]
    records: list[Record] = [(topics.outcomes, e.partition_key, e.to_json()) for e in events]
    records.append((topics.deadletter, b"acme:user-x", b'{"letter": 1}'))

    async def send() -> None:
        # Four producers, as the collector runs by default: a partition through each.
        sink = KafkaSink(
            platform_settings.bootstrap, batched_topics=frozenset({topics.outcomes}), producers=4
        )
        await sink.start()
        try:
            await sink.send_all(records, timeout_s=20)
        finally:
            await sink.stop()

    asyncio.run(send())
    # Read up to the end offsets of now: what send_all acknowledged is there already.
    stored = read_events(platform_settings.bootstrap, topics.outcomes)
    assert sorted(str(event.event_id) for _, event in stored) == sorted(
        str(event.event_id) for event in events
    )
    assert all(
        partition == partition_for(event.partition_key, platform_settings.partitions)
        for partition, event in stored
    )
    assert read_topic(platform_settings.bootstrap, topics.deadletter) == [
        (b"acme:user-x", b'{"letter": 1}')
    ]
