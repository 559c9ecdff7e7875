"""The stream worker's logic between Kafka and the pure attribution code.

``StreamProcessor`` handles one consumed message at a time: validate it (or return the
dead letter to write), update the unit's state in the unit table (a Faust table in the
worker, any mutable mapping in tests), add the state's contribution difference to the
partition's partial aggregates and record the offset as processed. ``publish`` sends what
changed to the aggregates topic and, once those are delivered, the progress marks that
they cover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from schemas.deadletter import DeadLetter
from schemas.events import ExposureEvent
from schemas.topics import TopicCatalog
from services.stream.attribution import (
    UnitState,
    record_exposure,
    record_outcome,
    to_micros,
    unit_contributions,
)
from services.stream.intake import EventType, SourceMessage, decode_event, internal_error
from services.stream.partials import PartialAggregates, Snapshot

log = logging.getLogger(__name__)

#: Enqueue one record (key, value) for the aggregates topic; returns its delivery future.
SendRecord = Callable[[bytes, bytes], "asyncio.Future[Any]"]
#: Delivery futures of the unit-table changelog writes made so far on the given partitions.
ChangelogWrites = Callable[[list[int]], "list[asyncio.Future[Any]]"]


class StreamProcessor:
    """Per-unit state in, per-partition partial aggregates and progress out."""

    def __init__(self, topics: TopicCatalog, units: MutableMapping[bytes, UnitState]) -> None:
        self.units = units
        self.partials = PartialAggregates()
        self._event_types: dict[str, EventType] = {
            topics.exposures: "exposure",
            topics.outcomes: "outcome",
        }
        self.dead_letter_count = 0

    def handle(self, message: SourceMessage) -> DeadLetter | None:
        """Process one message; return the dead letter to write if it was refused."""
        partition = message.partition
        if not self.partials.owns(partition):
            # A message of a partition revoked in a rebalance: its new owner processes it.
            log.debug("skipping %s[%d]@%d: partition not owned", *_where(message))
            return None
        try:
            dead_letter = self._process(message)
        except Exception as error:  # a bug must not stop the worker or hide the message
            log.exception("processing %s[%d]@%d failed", *_where(message))
            dead_letter = internal_error(message, error)
        if dead_letter is not None:
            self.dead_letter_count += 1
        self.partials.processed(partition, message.topic, message.offset)
        return dead_letter

    def _process(self, message: SourceMessage) -> DeadLetter | None:
        decoded = decode_event(message, self._event_types[message.topic])
        if isinstance(decoded, DeadLetter):
            return decoded
        key = decoded.partition_key
        state = self.units.get(key)
        if state is None:
            state = UnitState(tenant_id=decoded.tenant_id, partition=message.partition)
        event_id = decoded.event_id.bytes
        if event_id in state.seen_event_ids:
            return None
        timestamp = to_micros(decoded.timestamp)
        if isinstance(decoded, ExposureEvent):
            delta = record_exposure(
                state, event_id, decoded.experiment_key, decoded.variant_key, timestamp
            )
        else:
            delta = record_outcome(state, event_id, decoded.event, decoded.value, timestamp)
        self.units[key] = state
        if delta:
            self.partials.apply(message.partition, delta)
        return None

    def assign(
        self, partitions: Iterable[int], start_offsets: Mapping[int, Mapping[str, int]]
    ) -> int:
        """Own ``partitions``: rebuild their partial aggregates from the unit states.

        Returns how many unit states the rebuild used.
        """
        owned = set(partitions)
        states = [state for state in self.units.values() if state.partition in owned]
        self.partials.assign(
            owned, ((state.partition, unit_contributions(state)) for state in states), start_offsets
        )
        return len(states)

    def revoke(self, partitions: Iterable[int]) -> None:
        self.partials.revoke(partitions)

    async def publish(
        self,
        send: SendRecord,
        changelog_writes: ChangelogWrites,
        delivery_timeout: float = 60.0,
    ) -> int:
        """Send changed aggregates; once delivered, send the progress they cover.

        ``send`` enqueues one record and returns its delivery future. Progress also waits
        for the unit-table changelog writes made so far on its partitions, so a restarted
        worker never has less state than the progress claims. If anything is not
        delivered, the snapshot is marked dirty again and no progress is sent.
        Returns the number of records sent.
        """
        snapshot = self.partials.take_snapshot(datetime.now(UTC))
        if not snapshot:
            return 0
        try:
            pending = changelog_writes(
                [progress.source_partition for progress in snapshot.progress]
            )
            pending += [
                send(record.record_key, record.model_dump_json().encode())
                for record in snapshot.aggregates
            ]
            await _all_delivered(pending, delivery_timeout)
        except BaseException:
            self.partials.restore(snapshot)
            raise
        for progress in snapshot.progress:
            delivery = send(progress.record_key, progress.model_dump_json().encode())
            delivery.add_done_callback(self._progress_delivered(snapshot.without_aggregates()))
        return len(snapshot.aggregates) + len(snapshot.progress)

    def _progress_delivered(self, snapshot: Snapshot) -> Callable[[asyncio.Future[Any]], None]:
        def check(delivery: asyncio.Future[Any]) -> None:
            if delivery.cancelled() or delivery.exception() is not None:
                log.warning("a progress record was not delivered; will send it again")
                self.partials.restore(snapshot)

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


def _where(message: SourceMessage) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset
