"""Telling a hole in a partition's offsets from messages a consumer did not deliver.

A transactional producer's commit and abort markers take offsets of the partitions it
writes, and an aborted transaction's records stay in the log: read ``read_committed``,
a partition's records are not at consecutive offsets. ``HoleProbe.holes`` answers
whether offsets ``[start, offset)`` of a partition hold no committed record with a
direct read (its own consumer, ``read_committed``, assigned to that partition, fetching
from ``start``): the first record it returns is the first one at or after ``start``. The
record offsets of that fetch are kept, so later gaps inside the range it covered (a
transactional producer leaves one hole per transaction) are answered without a fetch.
The same read tells whether a partition's log ends with such offsets (a marker last):
a fetch of markers or aborted records alone returns nothing and moves the position on.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

#: Records and bytes one probe fetches at most: the range whose gaps it answers.
PROBE_RECORDS = 10_000
PROBE_PARTITION_BYTES = 1024 * 1024
#: Seconds a probe waits for the first record before it gives up (no answer: not holes).
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class _Fetched:
    """What one fetch of a partition from ``start`` saw: its committed records' offsets,
    and the position after them (past markers and aborted records that followed)."""

    start: int
    offsets: list[int]
    position: int

    def answers(self, start: int, offset: int) -> bool:
        return self.start <= start and offset <= self.position

    def first_record(self, start: int) -> int:
        """The first record's offset at or after ``start``, else the position."""
        index = bisect.bisect_left(self.offsets, start)
        return self.offsets[index] if index < len(self.offsets) else self.position


class HoleProbe:
    """Direct reads of partitions of the event topics (no group, nothing committed)."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._fetched: dict[tuple[str, int], _Fetched] = {}
        self.fetches = 0

    async def holes(self, topic: str, partition: int, start: int, offset: int) -> bool:
        """True if ``topic[partition]`` holds no committed record at offsets ``start`` to
        ``offset - 1``; False if a record lies between, or if the broker did not answer in
        time."""
        place = (topic, partition)
        fetched = self._fetched.get(place)
        if fetched is None or not fetched.answers(start, offset):
            fetched = await self._fetch(place, start, offset)
            if fetched is None:
                return False
            self._fetched[place] = fetched
        return fetched.first_record(start) >= offset

    def forget(self) -> None:
        """Drop what earlier fetches saw (partitions were reassigned)."""
        self._fetched.clear()

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _fetch(self, place: tuple[str, int], start: int, offset: int) -> _Fetched | None:
        consumer = await self._started()
        tp = TopicPartition(*place)
        consumer.assign([tp])
        consumer.seek(tp, start)
        self.fetches += 1
        offsets: list[int] = []
        position = start
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        # Until a record comes or the position reaches ``offset``: a fetch of markers or
        # aborted records only returns nothing and moves the position past them.
        while not offsets and position < offset:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("%s[%d]: no record after %d in %.0fs", *place, start, PROBE_TIMEOUT_S)
                return None
            batches = await consumer.getmany(
                tp, timeout_ms=max(1, round(min(remaining, 0.2) * 1000)), max_records=PROBE_RECORDS
            )
            offsets = [record.offset for record in batches.get(tp, ())]
            position = await consumer.position(tp)
        return _Fetched(start, offsets, position)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # below the log's start: its first record
                isolation_level="read_committed",
                max_partition_fetch_bytes=PROBE_PARTITION_BYTES,
                fetch_max_wait_ms=100,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
