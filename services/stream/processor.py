"""The stream worker's logic between Kafka and the pure attribution code.

``StreamProcessor`` owns, per source partition, the unit states (``UnitState`` by
``tenant:unit`` key) and the partial aggregates derived from them. ``handle`` takes one
consumed message (one event or a batch): validate it (or return the dead letters to
write), update each unit's state, add the state's contribution difference to the
partition's partial aggregates and record the offset as processed. ``publish`` sends
what changed to the aggregates topic and, once those are delivered, the progress marks
that they cover. ``assign`` takes a partition with the unit states restored from its
last snapshot; ``revoke`` drops one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from schemas.deadletter import DeadLetter
from schemas.shadow import SHADOW_EVENT
from schemas.topics import TopicCatalog
from services.stream.attribution import (
    NO_LIVE_METRICS,
    LiveMetrics,
    UnitState,
    add_exposure,
    add_outcome,
    unit_contributions,
)
from services.stream.intake import (
    EventType,
    KafkaMessage,
    SourceMessage,
    StreamEvent,
    decode_events,
    internal_error,
)
from services.stream.partials import PartialAggregates, Publication

log: Final = logging.getLogger(__name__)

#: Enqueue one record (key, value) for the aggregates topic; returns its delivery future.
SendRecord = Callable[[bytes, bytes], Awaitable["asyncio.Future[Any]"]]
#: Unit states of one partition, by ``tenant:unit`` key.
UnitStates = dict[bytes, UnitState]


class StreamProcessor:
    """Per-unit state in, per-partition partial aggregates and progress out."""

    def __init__(self, topics: TopicCatalog) -> None:
        self.units: dict[int, UnitStates] = {}
        #: Per partition, the units changed since the last ``take_changed``.
        self.changed: dict[int, set[bytes]] = {}
        self.partials = PartialAggregates()
        self._event_types: dict[str, EventType] = {
            topics.exposures: "exposure",
            topics.outcomes: "outcome",
        }
        #: Partitions of each event topic: an element of a batch must belong, by Kafka's
        #: default partitioner, to the partition it arrived on. The worker sets the counts
        #: the broker reports.
        self.partition_counts: dict[str, int] = {
            topics.exposures: topics.event_partitions,
            topics.outcomes: topics.event_partitions,
        }
        self.dead_letter_count = 0
        #: Events read (batch elements one by one), dead letters and duplicates included.
        self.event_count = 0
        #: The defined metrics kept live, per (tenant, experiment); see ``set_live``.
        self.live: LiveMetrics = NO_LIVE_METRICS

    def handle(self, message: SourceMessage) -> DeadLetter | None:
        """Process one message; return the dead letter to write if it was refused."""
        refused = self.handle_batch(message.topic, message.partition, [message])
        return refused[0][1] if refused else None

    def handle_batch(
        self, topic: str, partition: int, messages: Sequence[KafkaMessage]
    ) -> list[tuple[bytes | None, DeadLetter]]:
        """Process consecutive messages of one topic partition, in order; return the
        (key, dead letter) of each one refused."""
        units = self.units.get(partition)
        if units is None or not messages:
            # Messages of a partition revoked in a rebalance: its new owner processes them.
            log.debug("skipping %d messages of %s[%d]: not owned", len(messages), topic, partition)
            return []
        expected = self._event_types[topic]
        changed = self.changed[partition]
        sums, dirty = self.partials.sums_and_dirty(partition)
        live = self.live
        refused: list[tuple[bytes | None, DeadLetter]] = []
        decoded, origins = decode_events(messages, expected, self.partition_counts[topic])
        self.event_count += len(decoded)
        # The per-event path, written out in one loop: it runs for every event.
        for index in range(len(decoded)):
            event = decoded[index]
            if not isinstance(event, StreamEvent):
                refused.append((messages[origins[index]].key, event))
                continue
            try:
                kind, key, tenant, event_id, timestamp, experiment, variant, name, value = event
                if name == SHADOW_EVENT:
                    continue  # shadow observations: for the raw log, never for a metric
                state = units.get(key)
                if state is None:
                    state = units[key] = UnitState(tenant, partition)
                elif event_id in state.seen_event_ids:
                    continue
                changed.add(key)
                if kind == "exposure":
                    add_exposure(sums, dirty, state, event_id, experiment, variant, timestamp, live)
                else:
                    add_outcome(sums, dirty, state, event_id, name, value, timestamp, live)
            except Exception as error:  # a bug must not stop the worker or hide the message
                message = messages[origins[index]]
                log.exception("processing %s[%d]@%d failed", *_where(message))
                refused.append((message.key, internal_error(message, error)))
        self.dead_letter_count += len(refused)
        self.partials.processed(partition, topic, messages[-1].offset)
        return refused

    def assign(self, partition: int, units: UnitStates, next_offsets: Mapping[str, int]) -> None:
        """Own ``partition`` with its restored unit states; consumption resumes at
        ``next_offsets`` (topic -> offset), which those states already cover."""
        self.units[partition] = units
        self.changed[partition] = set()
        self.partials.assign(
            partition,
            (unit_contributions(state, self.live) for state in units.values()),
            next_offsets,
        )

    def set_live(self, live: LiveMetrics) -> None:
        """Keep ``live`` metrics from now on: every owned partition's aggregates are
        rebuilt from its unit states, so a metric defined after its events counts them."""
        self.live = live
        for partition in self.owned():
            self.partials.assign(
                partition,
                (unit_contributions(state, live) for state in self.units[partition].values()),
                self.partials.next_offsets(partition),
            )

    def revoke(self, partition: int) -> None:
        self.units.pop(partition, None)
        self.changed.pop(partition, None)
        self.partials.revoke([partition])

    def owned(self) -> list[int]:
        return sorted(self.units)

    def take_changed(self, partition: int) -> set[bytes]:
        """The units of ``partition`` changed since the last call (then none are)."""
        changed = self.changed.get(partition, set())
        self.changed[partition] = set()
        return changed

    async def publish(self, send: SendRecord, delivery_timeout: float = 60.0) -> int:
        """Send changed aggregates; once delivered, send the progress they cover.

        ``send`` enqueues one record and returns its delivery future. If anything is not
        delivered, the publication is marked dirty again and no progress is sent.
        Returns the number of records sent.
        """
        publication = self.partials.take_publication(datetime.now(UTC))
        if not publication:
            return 0
        try:
            pending = [
                await send(record.record_key, record.model_dump_json().encode())
                for record in publication.aggregates
            ]
            await _all_delivered(pending, delivery_timeout)
        except BaseException:
            self.partials.restore(publication)
            raise
        for progress in publication.progress:
            delivery = await send(progress.record_key, progress.model_dump_json().encode())
            delivery.add_done_callback(self._progress_delivered(publication.without_aggregates()))
        return len(publication.aggregates) + len(publication.progress)

    def _progress_delivered(
        self, publication: Publication
    ) -> Callable[[asyncio.Future[Any]], None]:
        def check(delivery: asyncio.Future[Any]) -> None:
            if delivery.cancelled() or delivery.exception() is not None:
                log.warning("a progress record was not delivered; will send it again")
                self.partials.restore(publication)

        return check


async def _all_delivered(futures: list[asyncio.Future[Any]], timeout: float) -> None:
    # asyncio.wait, unlike wait_for, never cancels the producer's futures on timeout.
    if not futures:
        return
    done, waiting = await asyncio.wait(futures, timeout=timeout)
    if waiting:
        raise TimeoutError(f"{len(waiting)} records not delivered within {timeout:g}s")
    for future in done:
        future.result()


def _where(message: KafkaMessage) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset
