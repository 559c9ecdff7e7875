"""The collector's sink against the real broker: a producer that hits a fatal error is
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
from services.collector.sink import KafkaSink, RecordsRefused
from tests.integration.helpers_collector import outcome, read_topic

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
        sink = KafkaSink(platform_settings.bootstrap, producers=1, on_replaced=replaced.append)
        await sink.start()
        try:
            await sink.send_all([record(good[0])], timeout_s=20)
            before = await sink.ready(5)
            with pytest.raises(RecordsRefused) as refused:
                await sink.send_all(
                    [(topic, b"acme:big", b"x" * (BROKER_MESSAGE_BYTES + 1000))], 20
                )
            assert "MessageSizeTooLarge" in str(refused.value)
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
    assert replaced == ["MessageSizeTooLargeError"]
    stored = [
        parse_event(value).unit_id for _, value in read_topic(platform_settings.bootstrap, topic)
    ]
    assert sorted(stored) == ["u0", "u1", "u2"]
