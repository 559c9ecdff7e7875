"""The stream worker: consume exposures and outcomes in batches, keep the unit states,
publish partial aggregates and progress, snapshot the states.

Consumers of the group ``{namespace}-stream`` share the source partitions with the range
assignor, which gives one worker the same partition number of both topics (they are
co-partitioned by ``tenant:unit``), so a unit's events meet in one worker. When a worker
takes a partition it restores the partition's unit states from their latest snapshot
(``snapshots``) and consumes from the offsets the snapshot covers; when it gives one up
it snapshots it first. Everything published is derived from the states, so a worker
killed at any moment and restarted, or replaced by another, publishes the same figures
once it has caught up: each event is applied exactly once to the states it restored.

The loop: fetch up to ``max_records`` messages, apply them (``StreamProcessor``), send
dead letters; every ``publish_interval`` (looked at every ``tick_interval`` at least)
publish changed aggregates and then progress; every ``snapshot_interval`` snapshot the
partitions that changed, one partition per turn of the loop (events are applied in
between), and commit their offsets (the committed offsets only show the group's lag; the
snapshots decide).

A broker outage is ridden out (``services.kafka_outage``): starting the clients, restoring
taken partitions and writing snapshots are retried with back-off (a failed snapshot keeps
its units marked changed, so nothing is lost), publications are retried on the next tick;
the worker exits only when Kafka has failed for longer than ``LIFTSTREAM_KAFKA_OUTAGE_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from liftstream.settings import Settings
from schemas.deadletter import DeadLetter, dead_letter_key
from schemas.topics import SNAPSHOT_RECORD_BYTES
from services.kafka_outage import OutageWindow, outage_tolerance_s, retry_async
from services.settings import DEFAULT_PUBLISH_INTERVAL, DEFAULT_SNAPSHOT_INTERVAL
from services.stream.definitions import MetricDefinitions
from services.stream.heap import FrozenHeap
from services.stream.processor import StreamProcessor
from services.stream.snapshots import SnapshotStore

log = logging.getLogger(__name__)

MAX_RECORDS = 10_000
#: How often, at most, a worker looks whether a publication is due: the latency a
#: publication due (or one waiting for the last to be delivered) adds at most.
TICK_S = 0.05
#: How long a starting worker waits to know the metric definitions before consuming.
CONTROL_WAIT_S = 30.0
#: After a snapshot failed (broker outage), how soon the next attempt comes.
SNAPSHOT_RETRY_S = 2.0


class StreamWorker:
    """One worker process's consumer, producer, processor and snapshots."""

    def __init__(
        self,
        settings: Settings,
        *,
        publish_interval: float = DEFAULT_PUBLISH_INTERVAL,
        snapshot_interval: float = DEFAULT_SNAPSHOT_INTERVAL,
    ) -> None:
        if not settings.bootstrap:
            raise ValueError("LIFTSTREAM_BOOTSTRAP: no Kafka bootstrap server is configured")
        if publish_interval <= 0:
            raise ValueError(f"publish_interval: must be > 0 seconds, got {publish_interval}")
        if snapshot_interval <= 0:
            raise ValueError(f"snapshot_interval: must be > 0 seconds, got {snapshot_interval}")
        self.settings = settings
        self.catalog = settings.topics
        self.group_id = f"{settings.namespace}-stream"
        self.publish_interval = publish_interval
        #: Between two looks whether a publication is due (when no batch comes sooner).
        self.tick_interval = min(TICK_S, publish_interval)
        self.snapshot_interval = snapshot_interval
        self.processor = StreamProcessor(self.catalog)
        self._sources = (self.catalog.exposures, self.catalog.outcomes)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._snapshots: SnapshotStore | None = None
        #: The metric definitions (set by ``run``); partitions taken are assigned through
        #: them so that a definition failing on restored units is quarantined.
        self._definitions: MetricDefinitions | None = None
        # Batches and rebalances never interleave: a rebalance callback awaits (restoring,
        # seeking), and the loop must not process records in between.
        self._exclusive = asyncio.Lock()
        self._generation = 0
        self._failure: BaseException | None = None
        self._heap = FrozenHeap()
        #: The publication being delivered while the loop goes on processing.
        self._publishing: asyncio.Task[None] | None = None
        self._last_publish = self._last_snapshot = time.monotonic()
        #: The partitions of the snapshot round under way, still to write.
        self._snapshot_round: list[int] = []
        self._snapshot_retry_at = 0.0
        self._outage_s = outage_tolerance_s()
        self._snapshot_outage = OutageWindow("writing snapshots", self._outage_s)
        #: What ``health`` serves: assignments taken, publications delivered (and their
        #: records), when a snapshot pass last succeeded (wall clock), and whether the
        #: latest assignment is restored (False from a revocation until then).
        self.rebalances = 0
        self.publications = 0
        self.published_records = 0
        self.last_snapshot_at = time.time()
        self.settled = False

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; then publish, snapshot and leave the group."""
        definitions = self._definitions = MetricDefinitions(
            self.settings.bootstrap, self.catalog.control, f"{self.group_id}-definitions"
        )
        definitions.start()
        if not await asyncio.to_thread(definitions.wait_until_caught_up, CONTROL_WAIT_S):
            log.warning("the control topic is not read to its end yet; metrics follow later")
        try:
            await retry_async(self._start_clients, "connecting to Kafka", self._outage_s)
            assert self._producer is not None and self._consumer is not None
            try:
                self._consumer.subscribe(list(self._sources), listener=_Rebalance(self))
                await self._loop(stop, definitions)
                await self._publish_now()
                await self.snapshot(self.processor.owned())
            finally:
                if self._publishing is not None:
                    self._publishing.cancel()
                try:
                    await self._consumer.stop()
                finally:
                    await self._producer.stop()
        finally:
            definitions.stop()

    async def _start_clients(self) -> None:
        """Start a new producer and consumer; on failure stop both (retried whole)."""
        self._producer, self._consumer = self._new_producer(), self._new_consumer()
        try:
            await self._producer.start()
            await self._consumer.start()
        except BaseException:
            for client in (self._consumer, self._producer):
                try:
                    await client.stop()
                except Exception as error:  # already broken: only its cleanup failed
                    log.debug("stopping a client that failed to start: %r", error)
            raise
        self._snapshots = SnapshotStore(
            self.settings.bootstrap, self.catalog.stream_snapshots, self._producer
        )

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap,
            client_id=f"{self.group_id}-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=SNAPSHOT_RECORD_BYTES,
        )

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap,
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # Any producer may write the event topics, transactional ones too: an aborted
            # transaction's events stay in the log and must not count.
            isolation_level="read_committed",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # Restoring a large partition happens inside the rebalance. The session stays
            # short: a killed worker's partitions wait that long for a new owner. Batches
            # and snapshots yield often enough for the heartbeats.
            rebalance_timeout_ms=300_000,
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )

    async def _loop(self, stop: asyncio.Event, definitions: MetricDefinitions) -> None:
        consumer = self._consumer
        assert consumer is not None
        handle_batch = self.processor.handle_batch
        while not stop.is_set():
            if self._failure is not None:
                raise RuntimeError("taking or giving up partitions failed") from self._failure
            generation = self._generation
            batches = await consumer.getmany(
                timeout_ms=round(self.tick_interval * 1000), max_records=MAX_RECORDS
            )
            async with self._exclusive:
                if generation != self._generation:
                    # A rebalance ran while fetching: these records may predate its seeks.
                    # Drop them and fetch again from where the states end.
                    await self._seek_to_states(batches)
                    continue
                for tp, records in batches.items():
                    # aiokafka's ConsumerRecord has SourceMessage's attributes.
                    for key, dead_letter in handle_batch(tp.topic, tp.partition, records):
                        await self._send_dead_letter(key, dead_letter)
                await self._follow_positions(consumer, batches)
                await self._housekeeping(definitions)

    async def _follow_positions(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, Any]
    ) -> None:
        """Move the states' next offset of each owned partition that returned no record to
        the consumer's position: a fetch of a transaction's marker (or of an aborted
        transaction's records) alone returns nothing but moves the position past them, so
        progress then reaches the log's end."""
        partials = self.processor.partials
        units = self.processor.units
        for tp in consumer.assignment():
            if tp in batches or tp.partition not in units:
                continue
            # Only below the end of what was fetched (the position is valid then).
            end = consumer.last_stable_offset(tp)
            next_offset = partials.next_offsets(tp.partition).get(tp.topic, 0)
            if end is None or end <= next_offset:
                continue
            position = await consumer.position(tp)
            if position > next_offset:
                partials.processed(tp.partition, tp.topic, position - 1)

    async def _housekeeping(self, definitions: MetricDefinitions) -> None:
        """Between batches: follow metric definitions, publish, snapshot when due."""
        started = time.monotonic()
        live = definitions.apply(self.processor)  # quarantines what fails; never raises
        if live is not None:
            log.info(
                "keeping %d defined metrics live in %d experiments; aggregates rebuilt in %.2fs",
                sum(len(metrics) for metrics in live.values()),
                len(live),
                time.monotonic() - started,
            )
        await definitions.publish_errors(self._send_aggregate)
        now = time.monotonic()
        # Due from when the last publication started, so the cadence is the interval
        # (give or take one tick); if the last one is still being delivered, the next
        # starts on the first tick after it is done, not an interval later.
        if now - self._last_publish >= self.publish_interval and self._publish_in_background():
            self._last_publish = now
            self._heap.settle()
        if now - self._last_snapshot >= self.snapshot_interval:
            self._last_snapshot = now
            self._snapshot_round = self.processor.owned()
        if self._snapshot_round and now >= self._snapshot_retry_at:
            # One partition per turn: events are applied (and published) between two
            # partitions' snapshots instead of waiting for all of them.
            partition = self._snapshot_round.pop(0)
            try:
                await self.snapshot([partition])
            except Exception as error:
                # The failed partition keeps its units marked changed and is attempted
                # again soon. Past the tolerated outage this raises.
                self._snapshot_round.insert(0, partition)
                self._snapshot_retry_at = time.monotonic() + SNAPSHOT_RETRY_S
                self._snapshot_outage.failed(error)
            else:
                self._snapshot_outage.succeeded()

    def _publish_in_background(self) -> bool:
        """Publish without waiting for the broker's acknowledgements: the loop goes on
        processing meanwhile (progress follows the aggregates once they are delivered,
        so it still only claims what they reflect). One publication at a time: False
        (nothing started) while the last one is still being delivered."""
        if self._publishing is not None and not self._publishing.done():
            return False
        self._publishing = asyncio.create_task(self._publish())
        return True

    async def _publish_now(self) -> None:
        """Publish everything changed and wait until it is delivered."""
        if self._publishing is not None:
            await self._publishing
        await self._publish()

    async def _publish(self) -> None:
        producer = self._producer
        assert producer is not None
        topic = self.catalog.aggregates

        async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
            return await producer.send(topic, key=key, value=value)

        try:
            sent = await self.processor.publish(send)
        except Exception:
            log.exception("publishing aggregates failed; will retry on the next tick")
        else:
            if sent:
                self.publications += 1
                self.published_records += sent

    async def _send_aggregate(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        assert self._producer is not None
        return await self._producer.send(self.catalog.aggregates, key=key, value=value)

    async def snapshot(self, partitions: Iterable[int]) -> None:
        """Snapshot the given owned partitions that changed; commit the offsets covered."""
        assert self._snapshots is not None and self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for partition in partitions:
            units = self.processor.units.get(partition)
            changed = self.processor.take_changed(partition)
            if units is None or not changed:
                continue
            next_offsets = self.processor.partials.next_offsets(partition)
            try:
                written = await self._snapshots.write(partition, units, changed, next_offsets)
            except BaseException:
                self.processor.changed[partition] |= changed  # in the next snapshot, then
                raise
            log.info(
                "%s snapshot of partition %d: %d units in %d chunks (%d layers), %.2fs",
                "full" if written.full else "delta",
                partition,
                written.units,
                written.chunks,
                written.layers,
                written.seconds,
            )
            for topic, offset in next_offsets.items():
                offsets[TopicPartition(topic, partition)] = offset
        self.last_snapshot_at = time.time()
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as error:  # only the lag display depends on it
                log.warning("could not commit offsets %s: %s", offsets, error)

    async def checkpoint(self, partitions: set[int]) -> None:
        """Before a rebalance: publish, and snapshot the partitions that may move."""
        async with self._exclusive:
            self._generation += 1
            self.settled = False
            owned = sorted(partitions & set(self.processor.owned()))
            if owned:
                await self._publish_now()
                await self.snapshot(owned)

    async def take(self, partitions: set[int]) -> None:
        """After a rebalance: own exactly ``partitions``.

        Partitions kept keep their states (nobody else can have had them: the group
        revokes every partition before it assigns any); partitions gone are dropped;
        new ones are restored from their snapshots and consumed from the offsets those
        cover.
        """
        async with self._exclusive:
            self._generation += 1
            await self._take(partitions)

    async def _take(self, partitions: set[int]) -> None:
        assert self._snapshots is not None and self._consumer is not None
        for topic in self._sources:
            known = self._consumer.partitions_for_topic(topic)
            if known:  # batches are checked against the partition count the broker has
                self.processor.partition_counts[topic] = len(known)
        for partition in set(self.processor.owned()) - partitions:
            self.processor.revoke(partition)
            self._snapshots.forget(partition)
        new = sorted(partitions - set(self.processor.owned()))
        started = time.monotonic()
        snapshots = self._snapshots
        restored = await retry_async(
            lambda: snapshots.restore(new), f"restoring partitions {new}", self._outage_s
        )
        for partition in new:
            state = restored[partition]
            if self._definitions is None:
                self.processor.assign(partition, state.units, state.next_offsets)
            else:
                self._definitions.assign(self.processor, partition, state.units, state.next_offsets)
        # Every owned partition resumes where its states end (the fetcher may have moved on).
        await self._seek_to_states(
            TopicPartition(topic, partition)
            for partition in self.processor.owned()
            for topic in self._sources
        )
        units = sum(len(restored[p].units) for p in new)
        self.rebalances += 1
        self.settled = True
        log.info(
            "owning partitions %s; restored %d unit states of %s from snapshots in %.2fs",
            self.processor.owned(),
            units,
            new,
            time.monotonic() - started,
        )

    @property
    def sources(self) -> tuple[str, str]:
        """The event topics: exposures, outcomes."""
        return self._sources

    @property
    def producer_started(self) -> bool:
        return self._producer is not None

    @property
    def failure(self) -> BaseException | None:
        """What stopped the worker (restoring partitions failed), or None."""
        return self._failure

    def highwater(self, topic: str, partition: int) -> int | None:
        """The offset after the last committed message of ``topic[partition]`` (its last
        stable offset) as last fetched, or None before a fetch (the lag figure)."""
        consumer = self._consumer
        if consumer is None:
            return None
        result: int | None = consumer.last_stable_offset(TopicPartition(topic, partition))
        return result

    def fail(self, error: BaseException) -> None:
        """Stop the worker: the loop raises ``error`` on its next turn."""
        self._failure = error

    async def _seek_to_states(self, partitions: Iterable[TopicPartition]) -> None:
        """Position owned ``partitions`` at the next offset their unit states lack."""
        assert self._consumer is not None
        owned = set(self.processor.owned())
        from_beginning = []
        for tp in partitions:
            if tp.partition not in owned:
                continue
            offset = self.processor.partials.next_offsets(tp.partition).get(tp.topic)
            if offset is None:
                from_beginning.append(tp)
            else:
                self._consumer.seek(tp, offset)
        # One reset for all of them: each call waits for its own offset lookup (about
        # 0.5 s), and the rebalance callback this runs in must end within the session
        # timeout (10 s), or the group drops the worker and rebalances again.
        if from_beginning:
            await self._consumer.seek_to_beginning(*from_beginning)

    async def _send_dead_letter(self, key: bytes | None, dead_letter: DeadLetter) -> None:
        assert self._producer is not None
        log.warning(
            "dead letter from %s[%s]@%s: %s",
            dead_letter.source_topic,
            dead_letter.source_partition,
            dead_letter.source_offset,
            dead_letter.reason,
        )
        try:
            # Bounded key and letter (schemas.deadletter): never a record the broker refuses.
            await self._producer.send(
                self.catalog.deadletter, key=dead_letter_key(key), value=dead_letter.encode()
            )
        except Exception:
            # The event itself stays in its source topic; keep the verdict in the log.
            log.exception("could not write the dead letter %s", dead_letter.encode())


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Snapshot partitions before they go; restore partitions as they come."""

    def __init__(self, worker: StreamWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.worker.checkpoint({tp.partition for tp in revoked})
        except Exception:
            # The last durable snapshot stays consistent with its offsets: the next owner
            # redoes the rest. Logged; the rebalance goes on.
            log.exception("snapshot before giving up partitions failed")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.worker.take({tp.partition for tp in assigned})
        except Exception as error:
            # aiokafka only logs a callback's exception; a worker that owns partitions it
            # could not restore must not sit idle holding them. It exits (non-zero).
            log.exception("restoring partitions %s failed", sorted(tp.partition for tp in assigned))
            self.worker.fail(error)
