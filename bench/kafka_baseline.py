"""The raw aiokafka consume rate of a set of topics: the ceiling any Kafka consumer here meets.

Reads every message of the given topics from the beginning to the end offsets seen at the
start, with no processing, and returns messages per second.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def _consume_all(bootstrap: str, topics: dict[str, int]) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic, count in topics.items()
            for partition in range(count)
        ]
        consumer.assign(partitions)
        end_offsets = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        remaining = {tp: end for tp, end in end_offsets.items() if end > 0}
        count = 0
        started = time.perf_counter()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                count += len(records)
                if records and records[-1].offset + 1 >= remaining.get(tp, 0):
                    remaining.pop(tp, None)
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


def raw_consume_rate(bootstrap: str, topics: dict[str, int]) -> tuple[int, float]:
    """(messages read, seconds taken) for a bare aiokafka consumer over ``topics``
    (topic name -> partition count)."""
    return asyncio.run(_consume_all(bootstrap, topics))
