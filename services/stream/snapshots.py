"""Snapshots of a partition's unit states on the ``<ns>.stream-snapshots`` topic.

The unit states are the only state the stream worker keeps; everything else is derived
from them. Partition p of the snapshots topic holds the snapshots of source partition p,
so whichever worker takes p after a rebalance or a crash finds them.

A snapshot is a *layer* of unit states: a full layer holds every unit of the partition,
a delta layer only the units changed since the previous layer. Writing one:

1. its states in chunks, keys ``chunk|<layer id>|<index>``;
2. once every chunk is durable, the manifest (key ``manifest``): the layers to apply in
   order (the last full one, then its deltas) and the source offsets they cover, taken
   between two batches, so the states are exactly those of every event before them;
3. after a full layer, tombstones for the layers it replaces (the topic is compacted).

A crash at any point leaves the latest durable manifest naming complete chunks.
Restoring reads the partition to its end and applies the layers its last manifest
names; the worker then consumes from the manifest's offsets, so each event is applied
to the restored states exactly once (event-id de-duplication handles events sent twice).
Deltas keep a snapshot's cost proportional to what changed; a full layer is written
again once the deltas hold as many units as the partition, so restoring stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.stream.attribution import UnitState
from services.stream.state_codec import decode_chunk, encode_chunk, encode_unit_state

log = logging.getLogger(__name__)

MANIFEST_KEY = b"manifest"
#: Target size of one chunk record (the topic allows up to ``SNAPSHOT_RECORD_BYTES``).
CHUNK_BYTES = 512 * 1024


@dataclass(frozen=True)
class Layer:
    """One written set of unit states: ``layer_id`` and how many chunks and units."""

    layer_id: str
    chunks: int
    units: int

    def chunk_key(self, index: int) -> bytes:
        return f"chunk|{self.layer_id}|{index}".encode()


@dataclass(frozen=True)
class Manifest:
    """The layers that make up a partition's states, and the offsets they cover."""

    layers: tuple[Layer, ...]
    next_offsets: dict[str, int]

    @property
    def delta_units(self) -> int:
        return sum(layer.units for layer in self.layers[1:])

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "layers": [layer.__dict__ for layer in self.layers],
                "next_offsets": self.next_offsets,
            }
        )

    @classmethod
    def from_json(cls, payload: bytes) -> Manifest:
        body = orjson.loads(payload)
        layers = tuple(Layer(**layer) for layer in body["layers"])
        return cls(layers, body["next_offsets"])


@dataclass(frozen=True)
class Restored:
    units: dict[bytes, UnitState]
    next_offsets: dict[str, int]
    manifest: Manifest | None


@dataclass
class SnapshotWrite:
    """What one ``SnapshotStore.write`` did (for the log)."""

    full: bool
    units: int
    chunks: int
    layers: int
    seconds: float = field(default=0.0)


def encode_chunks(
    units: dict[bytes, UnitState], keys: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """The states of ``keys`` as chunk payloads of about ``chunk_bytes`` each."""
    pending: list[tuple[bytes, bytes]] = []
    size = 0
    for key in keys:
        encoded = encode_unit_state(units[key])
        pending.append((key, encoded))
        size += len(encoded) + len(key)
        if size >= chunk_bytes:
            yield encode_chunk(pending)
            pending, size = [], 0
    if pending:
        yield encode_chunk(pending)


class SnapshotStore:
    """Writes and restores the snapshots of source partitions on one topic."""

    def __init__(self, bootstrap: str, topic: str, producer: AIOKafkaProducer) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.producer = producer
        self._manifests: dict[int, Manifest] = {}

    def forget(self, partition: int) -> None:
        """The partition moved to another worker: its next snapshot here starts afresh."""
        self._manifests.pop(partition, None)

    async def write(
        self,
        partition: int,
        units: dict[bytes, UnitState],
        changed: set[bytes],
        next_offsets: dict[str, int],
    ) -> SnapshotWrite:
        """Snapshot the partition as covering ``next_offsets``; returns once durable.

        ``changed`` are the units changed since this store's last snapshot of the
        partition; a delta layer of them is written unless a full one is due.
        """
        started = time.monotonic()
        previous = self._manifests.get(partition)
        full = previous is None or previous.delta_units + len(changed) >= max(len(units), 1)
        keys: Iterable[bytes] = units.keys() if full else sorted(changed)
        layer_id = str(time.time_ns())
        deliveries = []
        for index, chunk in enumerate(encode_chunks(units, keys)):
            key = Layer(layer_id, 0, 0).chunk_key(index)
            deliveries.append(
                await self.producer.send(self.topic, key=key, value=chunk, partition=partition)
            )
            await asyncio.sleep(0)  # let heartbeats and fetches run between chunks
        await asyncio.gather(*deliveries)
        layer = Layer(layer_id, len(deliveries), len(units) if full else len(changed))
        layers = (layer,) if full or previous is None else (*previous.layers, layer)
        manifest = Manifest(layers, dict(next_offsets))
        delivery = await self.producer.send(
            self.topic, key=MANIFEST_KEY, value=manifest.to_json(), partition=partition
        )
        await delivery
        self._manifests[partition] = manifest
        if full and previous is not None:
            for old in previous.layers:
                for index in range(old.chunks):
                    await self.producer.send(
                        self.topic, key=old.chunk_key(index), value=None, partition=partition
                    )
        return SnapshotWrite(
            full, layer.units, layer.chunks, len(layers), time.monotonic() - started
        )

    async def restore(self, partitions: Iterable[int]) -> dict[int, Restored]:
        """The latest complete snapshot of each partition (empty states if none)."""
        wanted = [TopicPartition(self.topic, partition) for partition in partitions]
        if not wanted:
            return {}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        try:
            consumer.assign(wanted)
            ends = await consumer.end_offsets(wanted)
            await consumer.seek_to_beginning(*wanted)
            records: dict[int, dict[bytes, bytes | None]] = {tp.partition: {} for tp in wanted}
            remaining = {tp: end for tp, end in ends.items() if end > 0}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=1000)
                for tp, batch in batches.items():
                    latest = records[tp.partition]
                    for record in batch:
                        if record.key is not None:
                            latest[record.key] = record.value
                # Positions, not record offsets: compaction leaves gaps before the end.
                for tp, end in list(remaining.items()):
                    if await consumer.position(tp) >= end:
                        del remaining[tp]
        finally:
            await consumer.stop()
        return {
            partition: await self._decode(partition, latest)
            for partition, latest in records.items()
        }

    async def _decode(self, partition: int, latest: dict[bytes, bytes | None]) -> Restored:
        raw_manifest = latest.get(MANIFEST_KEY)
        if raw_manifest is None:
            return Restored({}, {}, None)
        manifest = Manifest.from_json(raw_manifest)
        units: dict[bytes, UnitState] = {}
        for layer in manifest.layers:
            for index in range(layer.chunks):
                chunk = latest.get(layer.chunk_key(index))
                if chunk is None:
                    raise RuntimeError(
                        f"snapshot layer {layer.layer_id} of partition {partition} lacks "
                        f"chunk {index} on {self.topic}"
                    )
                units.update(decode_chunk(chunk))
                await asyncio.sleep(0)  # let heartbeats run between chunks
        self._manifests[partition] = manifest
        return Restored(units, dict(manifest.next_offsets), manifest)
