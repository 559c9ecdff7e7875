"""The Faust worker's drain: an agent takes a message and up to ``DRAIN_MESSAGES`` more
from its stream's buffer and applies each partition's run of them in one compiled call.
The offsets that follow (the states' next offset, which snapshots commit and progress
publishes) must be the last handled message's plus one: never past a message missing from
the run (it is read again), nor past a run whose call raised.

The agent body (``FaustStreamWorker._consume``) runs on a stand-in of Faust's stream and
consumer; the processor and the worker's snapshot path are the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from liftstream.settings import Settings
from schemas.events import ExposureEvent
from schemas.partitioning import partition_of_unit
from services.stream.faust_worker import DRAIN_MESSAGES, FaustStreamWorker

PARTITIONS = 2
T0 = datetime(2024, 3, 1, tzinfo=UTC)
EVENTS_PER_MESSAGE = 2


@dataclass(frozen=True)
class Message:
    """The attributes of Faust's ``Message`` the drain and the processor read."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    generation_id: int = 0


@dataclass(frozen=True)
class Event:
    """What a Faust stream's buffer holds: an event carrying its message."""

    message: Message


class Stream:
    """A Faust stream with every message already in its buffer: ``events()`` hands out one
    event per turn of the agent and ends when the buffer is empty; before each turn after
    the first it records the states' next offsets (what the previous turn left)."""

    def __init__(self, worker: FaustStreamWorker, messages: Sequence[Message]) -> None:
        self.channel = SimpleNamespace(queue=asyncio.Queue())
        for message in messages:
            self.channel.queue.put_nowait(Event(message))
        self.worker = worker
        self.after_turns: list[dict[tuple[str, int], int]] = []

    async def events(self) -> AsyncIterator[Event]:
        queue = self.channel.queue
        first = True
        while not queue.empty():
            if not first:
                self.after_turns.append(next_offsets(self.worker))
            first = False
            yield queue.get_nowait()
        self.after_turns.append(next_offsets(self.worker))


class Consumer:
    """Faust's consumer as the drain uses it: seeks, recorded."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


class Probe:
    """The hole probe: offsets ``[start, end)`` of a partition hold no record when listed."""

    def __init__(self) -> None:
        self.holes_at: set[tuple[str, int, int, int]] = set()

    async def holes(self, topic: str, partition: int, start: int, offset: int) -> bool:
        return (topic, partition, start, offset) in self.holes_at

    def forget(self) -> None:
        return None


class Producer:
    """Dead letters sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, value))


class Commits:
    """The snapshot path's consumer: offsets committed."""

    def __init__(self) -> None:
        self.committed: list[dict[tuple[str, int], int]] = []

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.committed.append({(tp.topic, tp.partition): offset for tp, offset in offsets.items()})


class Snapshots:
    """The snapshot store: the next offsets each written snapshot covers."""

    def __init__(self) -> None:
        self.written: list[tuple[int, dict[str, int]]] = []

    async def write(self, partition: int, units: Any, changed: Any, next_offsets: Any) -> Any:
        self.written.append((partition, dict(next_offsets)))
        return SimpleNamespace(full=True, units=len(units), chunks=1, layers=1, seconds=0.0)


class Processor:
    """The real processor, its compiled calls recorded as (place, offsets); the call for a
    place in ``fail`` raises (a bug or an error in the compiled path) instead."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[tuple[str, int], list[int]]] = []
        self.fail: set[tuple[str, int]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def handle_batch(self, topic: str, partition: int, messages: Sequence[Message]) -> Any:
        if (topic, partition) in self.fail:
            self.fail.discard((topic, partition))
            raise RuntimeError("the compiled path failed")
        self.calls.append(((topic, partition), [message.offset for message in messages]))
        return self._inner.handle_batch(topic, partition, messages)


@pytest.fixture
def worker(tmp_path: Path) -> FaustStreamWorker:
    settings = Settings("127.0.0.1:1", "ns", PARTITIONS, tmp_path, "")
    worker = FaustStreamWorker(settings)
    worker.app.consumer = Consumer()
    worker.app.flow_control.resume()  # Faust's flow runs between rebalances
    worker.processor = Processor(worker.processor)  # type: ignore[assignment]
    worker._hole_probe = Probe()  # type: ignore[assignment]
    worker._producer = Producer()  # type: ignore[assignment]
    worker._consumer = Commits()  # type: ignore[assignment]
    worker._snapshots = Snapshots()  # type: ignore[assignment]
    return worker


def units_of(partition: int) -> Iterator[str]:
    """Unit ids whose events belong to ``partition`` (Kafka's default partitioner)."""
    index = 0
    while True:
        unit = f"{partition}-u{index}"
        index += 1
        if partition_of_unit("acme", unit, PARTITIONS) == partition:
            yield unit


class Log:
    """Batch messages of exposures of new units, at consecutive offsets per place."""

    def __init__(self, topic: str, start: dict[int, int]) -> None:
        self.topic = topic
        self.next = dict(start)
        self._units = {partition: units_of(partition) for partition in start}

    def message(self, partition: int, offset: int | None = None) -> Message:
        if offset is None:
            offset = self.next[partition]
        self.next[partition] = offset + 1
        events = [
            ExposureEvent(
                tenant_id="acme",
                unit_id=next(self._units[partition]),
                timestamp=T0 + timedelta(seconds=offset),
                experiment_key="checkout",
                variant_key="control",
            )
            for _ in range(EVENTS_PER_MESSAGE)
        ]
        value = b"[" + b",".join(event.to_json() for event in events) + b"]"
        return Message(self.topic, partition, offset, events[0].partition_key, value)


def own(worker: FaustStreamWorker, partitions: dict[int, int]) -> None:
    """Own each partition with no unit state, its restored states ending at the offset."""
    topics = worker.sources
    for partition, offset in partitions.items():
        worker.processor.assign(partition, {}, {topic: offset for topic in topics})


def next_offsets(worker: FaustStreamWorker) -> dict[tuple[str, int], int]:
    processor = worker.processor
    return {
        (topic, partition): offset
        for partition in processor.owned()
        for topic, offset in processor.partials.next_offsets(partition).items()
    }


def units_held(worker: FaustStreamWorker) -> int:
    return sum(len(worker.processor.units[p]) for p in worker.processor.owned())


async def drain(worker: FaustStreamWorker, messages: Sequence[Message]) -> Stream:
    stream = Stream(worker, messages)
    await worker._consume(stream)
    return stream


async def committed_after_snapshot(worker: FaustStreamWorker) -> dict[tuple[str, int], int]:
    commits: Commits = worker._consumer  # type: ignore[assignment]
    commits.committed.clear()
    await worker.snapshot(worker.processor.owned())
    assert len(commits.committed) == 1
    return commits.committed[0]


def test_a_drain_of_interleaved_partitions_ends_each_at_its_last_message(
    worker: FaustStreamWorker,
) -> None:
    exposures, outcomes = worker.sources
    own(worker, {0: 100, 1: 40})
    log = Log(exposures, {0: 98, 1: 40})
    # Two messages the restored states of partition 0 already hold (delivered again),
    # then 300 buffered messages alternating between the partitions, a malformed one
    # (a dead letter: handled, so the offset moves past it) among them.
    messages = [log.message(0), log.message(0)]
    for index in range(300):
        messages.append(log.message(index % 2))
    bad = log.next[1]
    messages.append(Message(exposures, 1, bad, b"acme:x", b"not json"))
    log.next[1] = bad + 1
    messages.append(log.message(1))

    stream = asyncio.run(drain(worker, messages))

    processor: Any = worker.processor
    # First turn: the first message and DRAIN_MESSAGES - 1 buffered ones, one compiled call
    # per partition, each starting where the states end.
    first_turn = messages[:DRAIN_MESSAGES]
    last_of = {m.partition: m.offset for m in first_turn}
    assert processor.calls[:2] == [
        ((exposures, 0), list(range(100, last_of[0] + 1))),
        ((exposures, 1), list(range(40, last_of[1] + 1))),
    ]
    assert stream.after_turns[0] == {
        (exposures, 0): last_of[0] + 1,
        (exposures, 1): last_of[1] + 1,
        (outcomes, 0): 100,
        (outcomes, 1): 40,
    }
    # The rest: every message applied once, each partition's next offset after its last.
    assert stream.after_turns[-1] == {
        (exposures, 0): 250,
        (exposures, 1): bad + 2,
        (outcomes, 0): 100,
        (outcomes, 1): 40,
    }
    assert units_held(worker) == 300 * EVENTS_PER_MESSAGE + EVENTS_PER_MESSAGE
    assert processor.event_count == (300 + 1) * EVENTS_PER_MESSAGE + 1
    assert len(worker._producer.sent) == 1  # type: ignore[union-attr]
    assert worker.app.consumer.seeks == []  # type: ignore[attr-defined]
    assert asyncio.run(committed_after_snapshot(worker)) == {
        (exposures, 0): 250,
        (exposures, 1): bad + 2,
        (outcomes, 0): 100,
        (outcomes, 1): 40,
    }


def test_a_message_missing_from_a_run_stops_it_there_until_it_is_read_again(
    worker: FaustStreamWorker,
) -> None:
    exposures, _ = worker.sources
    own(worker, {0: 0})
    log = Log(exposures, {0: 0})
    messages = [log.message(0) for _ in range(10)]
    # Offset 5 was fetched but cleared from the buffer (a rebalance): not a hole.
    asyncio.run(drain(worker, messages[:5] + messages[6:]))

    assert next_offsets(worker)[(exposures, 0)] == 5
    assert units_held(worker) == 5 * EVENTS_PER_MESSAGE  # nothing after the missing one
    assert worker.app.consumer.seeks == [(TP(exposures, 0), 5)]  # type: ignore[attr-defined]
    assert asyncio.run(committed_after_snapshot(worker))[(exposures, 0)] == 5

    asyncio.run(drain(worker, messages[5:]))  # read again from the seek
    assert next_offsets(worker)[(exposures, 0)] == 10
    assert worker.processor.event_count == 10 * EVENTS_PER_MESSAGE  # each once
    assert asyncio.run(committed_after_snapshot(worker))[(exposures, 0)] == 10


def test_offsets_holding_no_record_are_passed_in_the_run(worker: FaustStreamWorker) -> None:
    exposures, _ = worker.sources
    own(worker, {0: 0})
    log = Log(exposures, {0: 0})
    before = [log.message(0) for _ in range(5)]
    after = [log.message(0, 7)] + [log.message(0) for _ in range(2)]  # 7, 8, 9
    worker._hole_probe.holes_at.add((exposures, 0, 5, 7))  # type: ignore[union-attr]

    asyncio.run(drain(worker, before + after))

    assert worker.processor.calls == [((exposures, 0), [0, 1, 2, 3, 4, 7, 8, 9])]  # type: ignore[attr-defined]
    assert next_offsets(worker)[(exposures, 0)] == 10
    assert worker.app.consumer.seeks == []  # type: ignore[attr-defined]


def test_a_run_whose_call_raises_moves_no_offset_and_its_successors_seek_back(
    worker: FaustStreamWorker,
) -> None:
    exposures, outcomes = worker.sources
    own(worker, {0: 20, 1: 0})
    log = Log(exposures, {0: 20, 1: 0})
    failing = [log.message(0) for _ in range(5)]  # 20-24
    other = [log.message(1) for _ in range(3)]
    worker.processor.fail.add((exposures, 0))  # type: ignore[attr-defined]

    with pytest.raises(RuntimeError, match="compiled path failed"):
        asyncio.run(drain(worker, failing + other))

    # Neither the failed run nor the one after it in the same drain moved.
    assert next_offsets(worker) == {
        (exposures, 0): 20,
        (exposures, 1): 0,
        (outcomes, 0): 20,
        (outcomes, 1): 0,
    }
    assert units_held(worker) == 0
    # Faust restarts the agent; the failed turn's messages are gone from the buffer, so the
    # next ones of partition 0 do not continue its states: they send the consumer back.
    later = [log.message(0) for _ in range(3)]  # 25-27
    asyncio.run(drain(worker, later + other))
    assert next_offsets(worker)[(exposures, 0)] == 20
    assert next_offsets(worker)[(exposures, 1)] == 3
    assert worker.app.consumer.seeks == [(TP(exposures, 0), 20)]  # type: ignore[attr-defined]
    # A snapshot now commits partition 1's offsets, and nothing of partition 0 (no state
    # of it changed: its committed offset stays where its last snapshot ended).
    committed = asyncio.run(committed_after_snapshot(worker))
    assert committed == {(exposures, 1): 3, (outcomes, 1): 0}

    asyncio.run(drain(worker, failing + later))  # read again from the seek
    assert next_offsets(worker)[(exposures, 0)] == 28
    assert units_held(worker) == (8 + 3) * EVENTS_PER_MESSAGE
    assert worker.processor.event_count == (8 + 3) * EVENTS_PER_MESSAGE  # each once
    assert asyncio.run(committed_after_snapshot(worker)) == {(exposures, 0): 28, (outcomes, 0): 20}
