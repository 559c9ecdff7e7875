"""Exactly-once state for the stream worker: a Faust table's changelog beside the snapshot
layers, measured on the same unit states.

``python -m bench.changelog_vs_snapshot [--events 200000]`` (broker from
``LIFTSTREAM_BOOTSTRAP``): the events of ``bench.stream_rate`` are applied by a
``StreamProcessor`` (no Kafka), then, on a fresh namespace,

- *changelog*: what a Faust table keyed by ``tenant:unit`` writes, one record per update
  (per event): each event's unit state encoded and sent with an idempotent acks=all
  aiokafka producer (Faust's producer), until all are acknowledged;
- *snapshot*: ``SnapshotStore.write`` of every unit of every partition (a full layer,
  the most a snapshot interval can write);

then how long each takes to read back: the changelog topic consumed and every record
decoded (a table's recovery reads every record not yet compacted away), and
``SnapshotStore.restore`` of all partitions. Prints seconds and µs per event or unit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from bench.stream_rate import bench_messages, delete_namespace, fresh_settings
from liftstream.settings import Settings
from schemas.partitioning import partition_for
from services.stream.attribution import UnitState
from services.stream.intake import SourceMessage
from services.stream.processor import StreamProcessor
from services.stream.snapshots import SnapshotStore
from services.stream.state_codec import decode_unit_state, encode_unit_state


def apply_all(settings: Settings, events: int) -> tuple[StreamProcessor, list[bytes]]:
    """The processor after every event; the key of each event applied, in order."""
    messages, _units = bench_messages(settings, events)
    processor = StreamProcessor(settings.topics)
    for partition in range(settings.partitions):
        processor.assign(partition, {}, {})
    offsets: dict[tuple[str, int], int] = {}
    keys = []
    for topic, key, value in messages:
        where = (topic, partition_for(key, settings.partitions))
        offset = offsets.get(where, 0)
        offsets[where] = offset + 1
        processor.handle_batch(
            topic, where[1], [SourceMessage(topic, where[1], offset, key, value)]
        )
        keys.append(key)
    return processor, keys


async def changelog(settings: Settings, processor: StreamProcessor, keys: list[bytes]) -> None:
    states: dict[bytes, UnitState] = {}
    for units in processor.units.values():
        states.update(units)
    topic = f"{settings.namespace}-changelog-bench"  # deleted with the namespace
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, settings.partitions, 1)])
    finally:
        admin.close()
    await producer.start()
    started = time.perf_counter()
    try:
        pending = [
            await producer.send(topic, key=key, value=encode_unit_state(states[key]))
            for key in keys
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    wrote = time.perf_counter() - started
    print(
        f"changelog: {len(keys):,} records (one per event) written in {wrote:.2f}s, "
        f"{wrote / len(keys) * 1e6:.1f} µs per event"
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    await consumer.start()
    started = time.perf_counter()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        read = 0
        while read < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for record in records:
                    decode_unit_state(record.value)
                read += len(records)
    finally:
        await consumer.stop()
    took = time.perf_counter() - started
    print(f"changelog: read back and decoded in {took:.2f}s (a table's recovery)")


async def snapshot(settings: Settings, processor: StreamProcessor) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True,
        linger_ms=5, max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
    )  # fmt: skip
    await producer.start()
    store = SnapshotStore(settings.bootstrap, settings.topics.stream_snapshots, producer)
    units = sum(len(u) for u in processor.units.values())
    started = time.perf_counter()
    try:
        for partition in processor.owned():
            states = processor.units[partition]
            await store.write(
                partition, states, set(states), processor.partials.next_offsets(partition)
            )
    finally:
        await producer.stop()
    wrote = time.perf_counter() - started
    print(
        f"snapshot: {units:,} units (a full layer of every partition) written in {wrote:.2f}s, "
        f"{wrote / units * 1e6:.1f} µs per unit"
    )
    started = time.perf_counter()
    restored = await SnapshotStore(
        settings.bootstrap, settings.topics.stream_snapshots, None
    ).restore(  # type: ignore[arg-type]
        processor.owned()
    )
    took = time.perf_counter() - started
    print(
        f"snapshot: restored {sum(len(r.units) for r in restored.values()):,} units in {took:.2f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("LIFTSTREAM_BOOTSTRAP", "")
    if not bootstrap:
        raise SystemExit("set LIFTSTREAM_BOOTSTRAP to a running broker")
    settings = fresh_settings(bootstrap, "changelog")
    try:
        processor, keys = apply_all(settings, args.events)
        units = sum(len(u) for u in processor.units.values())
        print(f"{len(keys):,} events applied: {units:,} units")
        asyncio.run(changelog(settings, processor, keys))
        asyncio.run(snapshot(settings, processor))
    finally:
        delete_namespace(settings)


if __name__ == "__main__":
    main()
